/** config.json of every supported family, read into one shape. */
import { WeitiaoError } from "../util/errors.js";
import { familyOf, SUPPORTED_MODEL_TYPES, type Family } from "./families/index.js";
import type { ConfigReader } from "./families/family.js";

export type ProblemType = "single_label_classification" | "multi_label_classification" | "regression";

/** The sizes and settings every family's config gives, under BERT's names (a family maps its own onto these). */
export interface FamilyFields {
  vocab_size: number;
  hidden_size: number;
  /** Width of the embeddings (ELECTRA, ALBERT factorize them); hidden_size elsewhere. */
  embedding_size: number;
  num_hidden_layers: number;
  /** ALBERT's shared layer groups (layer i uses group ⌊i·G/L⌋); 0: every layer has its own parameters. */
  num_hidden_groups: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: "gelu" | "gelu_new";
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  /** The head's dropout (null: hidden_dropout_prob). */
  classifier_dropout: number | null;
  max_position_embeddings: number;
  /** 0: no token types (DistilBERT). */
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  pad_token_id: number;
  /** ERNIE's task types (0: none, or `use_task_id` false). */
  task_type_vocab_size: number;
}

/** A model's config.json, read through its family; unknown fields are kept verbatim so saving loses nothing. */
export interface BertConfig extends FamilyFields {
  num_labels: number;
  id2label: Record<string, string>;
  label2id: Record<string, number>;
  problem_type?: ProblemType | null;
  model_type: string;
  architectures?: string[];
  /** Every field of the original file, for a lossless save. */
  raw: Record<string, unknown>;
}

/** The config of any family (BertConfig's name is kept: BERT's field names are the shared ones). */
export type ModelConfig = BertConfig;

export function familyOfConfig(config: { model_type: string }): Family {
  return familyOf(config.model_type)!;
}

/** The longest input the position table allows: RoBERTa's positions start at pad_token_id + 1. */
export function maxSequenceLength(config: BertConfig): number {
  return familyOfConfig(config).positions === "after-padding"
    ? config.max_position_embeddings - config.pad_token_id - 1
    : config.max_position_embeddings;
}

export function parseBertConfig(raw: Record<string, unknown>, source: string): BertConfig {
  const modelType = String(raw.model_type ?? "bert");
  const family = familyOf(modelType);
  if (!family) {
    throw new WeitiaoError(
      `${source}: model_type "${modelType}" is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(", ")}; ` +
        "model_type \"bert\" includes bert-base-chinese, hfl/chinese-roberta-wwm-ext and MacBERT)",
    );
  }
  const cfg = { ...family.defaults, ...raw } as Record<string, unknown>;
  const fail = (message: string): never => {
    throw new WeitiaoError(`${source}: ${message}`);
  };
  const num = (k: string): number => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isFinite(v)) fail(`field ${k} must be a number`);
    return v as number;
  };
  // Sizes become array lengths and loop bounds: a fraction, zero or an absurd value must fail here, at load, not
  // mid-training or as an allocation of gigabytes. The caps are far above any published encoder.
  const reader: ConfigReader = {
    raw: cfg,
    num,
    has: (k) => raw[k] !== undefined,
    str: (k) => String(cfg[k]),
    fail,
    size: (k, max, min = 1) => {
      const v = num(k);
      if (!Number.isInteger(v) || v < min || v > max) fail(`field ${k} must be an integer from ${min} to ${max} (got ${v})`);
      return v;
    },
    prob: (k) => {
      const v = num(k);
      if (v < 0 || v >= 1) fail(`field ${k} must be a probability in [0, 1) (got ${v})`);
      return v;
    },
  };
  const fields = family.parse(reader);
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
    ...fields,
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
  if (maxSequenceLength(config) < 2) throw new WeitiaoError(`${source}: max_position_embeddings ${config.max_position_embeddings} leaves no room for a sequence`);
  return config;
}

/** The label names in id order (id2label's keys are strings: "10" sorts after "9"). */
export function labelNames(config: Pick<BertConfig, "id2label">): string[] {
  return Object.keys(config.id2label).sort((a, b) => Number(a) - Number(b)).map((k) => config.id2label[k]!);
}

/** True when the labels are HF's generic placeholders (LABEL_0, LABEL_1, …) rather than real names. */
export function hasGenericLabels(config: BertConfig): boolean {
  return Object.values(config.id2label).every((n, i) => n === `LABEL_${i}`);
}

/** The config.json HF would write for this model: the original fields plus what training changed. */
/** The class HF names a task model of this family: …ForSequenceClassification, …ForTokenClassification, …ForMaskedLM. */
export function architectureOf(config: BertConfig, task = "text-classification"): string {
  const family = familyOfConfig(config);
  const arch = family.architecture(config.model_type);
  if (task === "fill-mask" && family.maskedLm) return family.maskedLm.architecture(config.model_type);
  return task === "token-classification" ? arch.replace(/ForSequenceClassification$/, "ForTokenClassification") : arch;
}

export function configToJson(config: BertConfig, task = "text-classification"): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config.raw };
  out.architectures = [architectureOf(config, task)];
  out.model_type = config.model_type;
  if (config.model_type === "bert") {
    // BertConfig writes every field, defaults included
    for (const k of [
      "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
      "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "max_position_embeddings",
      "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
    ] as const) {
      out[k] = config[k];
    }
  }
  if (task === "fill-mask") {
    // a masked LM has no labels: HF's PretrainedConfig defaults, which to_diff_dict drops
    delete out.id2label;
    delete out.label2id;
    out.tie_word_embeddings ??= true;
  } else {
    out.id2label = config.id2label;
    out.label2id = config.label2id;
  }
  if (config.problem_type && task !== "fill-mask") out.problem_type = config.problem_type;
  delete out.num_labels; // HF derives it from id2label
  return out;
}
