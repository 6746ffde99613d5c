/**
 * An encoder family: what one HF `modeling_<family>.py` fixes for its `…ForSequenceClassification` — its config
 * fields, its state-dict names, and which optional modules its encoder wires in. The model (../bert.ts) runs every
 * family with the same modules; a family file says which ones and under which names.
 */
import type { FamilyFields } from "../config.js";
import type { ClassifierKind } from "../heads/classification.js";

/** Module prefixes (a Linear or LayerNorm's name without `.weight`/`.bias`) of one encoder layer. */
export interface LayerNames {
  query: string;
  key: string;
  value: string;
  /** Attention output projection, then the LayerNorm over it + the residual. */
  attentionOutput: string;
  attentionNorm: string;
  /** Feed-forward in (hidden → intermediate), out (intermediate → hidden), and the LayerNorm after it. */
  intermediate: string;
  output: string;
  outputNorm: string;
}

export interface EmbeddingNames {
  word: string;
  position: string;
  /** null: the family has no token types (DistilBERT). */
  tokenType: string | null;
  /** ERNIE's task-type table, when `use_task_id`. */
  taskType: string | null;
  norm: string;
}


/** ReadConfig: field readers that validate and name the family's own field on error. */
export interface ConfigReader {
  raw: Record<string, unknown>;
  /** An integer in [min, max]. */
  size(key: string, max: number, min?: number): number;
  /** A probability in [0, 1). */
  prob(key: string): number;
  num(key: string): number;
  has(key: string): boolean;
  str(key: string): string;
  fail(message: string): never;
}

/**
 * A family's …ForMaskedLM head (heads/masked-lm.ts): dense → activation → LayerNorm → a decoder whose weight is the
 * word embedding (tied: one parameter, never saved twice) plus a vocabulary-sized bias.
 */
export interface MaskedLmNames {
  architecture(modelType: string): string;
  dense: string;
  /** "config": the config's hidden_act (BERT, ALBERT); "gelu": always the exact GELU (RoBERTa, DistilBERT, ELECTRA). */
  activation: "config" | "gelu";
  norm: string;
  /** The decoder's bias as the state dict names it. */
  bias: string;
  /** The dense layer maps hidden_size to embedding_size (ALBERT, ELECTRA), else to hidden_size. */
  toEmbedding: boolean;
  /** State-dict names HF ties to the embedding or to `bias` and drops on save (older checkpoints may hold them). */
  tied: string[];
}

export interface Family {
  /** config.json `model_type` values this family reads. */
  modelTypes: readonly string[];
  /** HF's base_model_prefix: the encoder's parameters are named `<prefix>.…`. */
  prefix: string;
  /** The class `save_pretrained` names in `architectures`. */
  architecture(modelType: string): string;
  /** HF's config defaults for this family (what a field missing from config.json means). */
  defaults: Record<string, unknown>;
  /** The family's config fields, read into the shared shape. */
  parse(c: ConfigReader): FamilyFields;
  embeddings(c: FamilyFields): EmbeddingNames;
  /** The Linear from embedding_size to hidden_size, when the family has one and the sizes differ. */
  projection(c: FamilyFields): string | null;
  /** Names of the parameters of layer group g (one per layer, except ALBERT's shared groups). */
  layer(g: number): LayerNames;
  /** The pooler's Linear (tanh(W·h[CLS])), or null when the head reads the first token directly. */
  pooler: string | null;
  /** Its …ForSequenceClassification head (heads/classification.ts). */
  classifier: ClassifierKind;
  /** RoBERTa's position ids start after padding_idx (create_position_ids_from_input_ids). */
  positions: "absolute" | "after-padding";
  /** Its …ForMaskedLM head, or null where HF has none. */
  maskedLm: MaskedLmNames | null;
  /** Checkpoint names of other heads and pretraining modules that this task model does not use. */
  foreign: RegExp;
}
