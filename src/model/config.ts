/** BertConfig as HF writes it in config.json; unknown fields are kept verbatim so saving loses nothing. */
import { WeitiaoError } from "../util/errors.js";

export type ProblemType = "single_label_classification" | "multi_label_classification" | "regression";

export interface BertConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  classifier_dropout: number | null;
  max_position_embeddings: number;
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  pad_token_id: number;
  num_labels: number;
  id2label: Record<string, string>;
  label2id: Record<string, number>;
  problem_type?: ProblemType | null;
  model_type: string;
  architectures?: string[];
  /** Every field of the original file, for a lossless save. */
  raw: Record<string, unknown>;
}

/** Model types whose checkpoints are BERT-shaped and load as BERT. */
const BERT_SHAPED = new Set(["bert"]);

const DEFAULTS = {
  vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  hidden_act: "gelu", hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, classifier_dropout: null,
  max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02, layer_norm_eps: 1e-12, pad_token_id: 0,
};

export function parseBertConfig(raw: Record<string, unknown>, source: string): BertConfig {
  const modelType = String(raw.model_type ?? "bert");
  if (!BERT_SHAPED.has(modelType)) {
    throw new WeitiaoError(
      `${source}: model_type "${modelType}" is not supported (weitiao trains BERT-architecture models: model_type "bert", ` +
        `which includes bert-base-chinese, hfl/chinese-roberta-wwm-ext and MacBERT)`,
    );
  }
  const cfg = { ...DEFAULTS, ...raw } as Record<string, unknown>;
  const num = (k: string): number => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new WeitiaoError(`${source}: field ${k} must be a number`);
    return v;
  };
  // Sizes become array lengths and loop bounds: a fraction, zero or an absurd value must fail here, at load, not
  // mid-training or as an allocation of gigabytes. The caps are far above any published encoder.
  const size = (k: string, max: number, min = 1): number => {
    const v = num(k);
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new WeitiaoError(`${source}: field ${k} must be an integer from ${min} to ${max} (got ${v})`);
    }
    return v;
  };
  const prob = (k: string): number => {
    const v = num(k);
    if (v < 0 || v >= 1) throw new WeitiaoError(`${source}: field ${k} must be a probability in [0, 1) (got ${v})`);
    return v;
  };
  const hiddenAct = String(cfg.hidden_act);
  if (hiddenAct !== "gelu") {
    throw new WeitiaoError(`${source}: hidden_act "${hiddenAct}" is not supported (only "gelu", the exact erf GELU BERT uses)`);
  }
  if (cfg.position_embedding_type !== undefined && cfg.position_embedding_type !== "absolute") {
    throw new WeitiaoError(`${source}: position_embedding_type "${String(cfg.position_embedding_type)}" is not supported (only "absolute")`);
  }
  let id2label = (raw.id2label ?? null) as Record<string, string> | null;
  if (id2label !== null && (typeof id2label !== "object" || Array.isArray(id2label))) {
    throw new WeitiaoError(`${source}: field id2label must be an object of index → name`);
  }
  let numLabels = typeof raw.num_labels === "number" ? raw.num_labels : id2label ? Object.keys(id2label).length : 2;
  if (!Number.isInteger(numLabels) || numLabels < 1 || numLabels > 1_000_000) {
    throw new WeitiaoError(`${source}: num_labels must be an integer from 1 to 1000000 (got ${numLabels})`);
  }
  if (!id2label) id2label = Object.fromEntries(Array.from({ length: numLabels }, (_, i) => [String(i), `LABEL_${i}`]));
  numLabels = Object.keys(id2label).length;
  const label2id = (raw.label2id as Record<string, number> | undefined) ??
    Object.fromEntries(Object.entries(id2label).map(([i, n]) => [n, Number(i)]));
  const config: BertConfig = {
    vocab_size: size("vocab_size", 4_000_000),
    hidden_size: size("hidden_size", 16_384),
    num_hidden_layers: size("num_hidden_layers", 256),
    num_attention_heads: size("num_attention_heads", 1024),
    intermediate_size: size("intermediate_size", 65_536),
    hidden_act: hiddenAct,
    hidden_dropout_prob: prob("hidden_dropout_prob"),
    attention_probs_dropout_prob: prob("attention_probs_dropout_prob"),
    classifier_dropout: cfg.classifier_dropout == null ? null : prob("classifier_dropout"),
    max_position_embeddings: size("max_position_embeddings", 1_048_576),
    type_vocab_size: size("type_vocab_size", 65_536),
    initializer_range: num("initializer_range"),
    layer_norm_eps: num("layer_norm_eps"),
    pad_token_id: cfg.pad_token_id == null ? 0 : size("pad_token_id", 4_000_000, 0),
    num_labels: numLabels,
    id2label,
    label2id,
    problem_type: (raw.problem_type as ProblemType | null | undefined) ?? null,
    model_type: modelType,
    architectures: raw.architectures as string[] | undefined,
    raw: { ...raw },
  };
  if (!(config.layer_norm_eps > 0)) throw new WeitiaoError(`${source}: field layer_norm_eps must be positive`);
  if (config.pad_token_id >= config.vocab_size) {
    throw new WeitiaoError(`${source}: pad_token_id ${config.pad_token_id} is beyond vocab_size ${config.vocab_size}`);
  }
  if (config.hidden_size % config.num_attention_heads !== 0) {
    throw new WeitiaoError(`${source}: hidden_size ${config.hidden_size} is not a multiple of num_attention_heads ${config.num_attention_heads}`);
  }
  return config;
}

/** True when the labels are HF's generic placeholders (LABEL_0, LABEL_1, …) rather than real names. */
export function hasGenericLabels(config: BertConfig): boolean {
  return Object.values(config.id2label).every((n, i) => n === `LABEL_${i}`);
}

/** The config.json HF would write for this model: the original fields plus what training changed. */
export function configToJson(config: BertConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config.raw };
  out.architectures = ["BertForSequenceClassification"];
  out.model_type = config.model_type;
  for (const k of [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
  ] as const) {
    out[k] = config[k];
  }
  out.id2label = config.id2label;
  out.label2id = config.label2id;
  if (config.problem_type) out.problem_type = config.problem_type;
  delete out.num_labels; // HF derives it from id2label
  return out;
}
