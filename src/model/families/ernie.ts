/** ERNIE (modular_ernie.py over modeling_bert.py): BERT under `ernie.`, plus task-type embeddings when `use_task_id`. */
import type { Family } from "./family.js";
import { BERT_DEFAULTS, bertEmbeddings, bertFields, bertLayer } from "./bert.js";

export const ernie: Family = {
  modelTypes: ["ernie"],
  prefix: "ernie",
  architecture: () => "ErnieForSequenceClassification",
  defaults: { ...BERT_DEFAULTS, task_type_vocab_size: 3, use_task_id: false },
  parse: (c) => ({
    ...bertFields(c),
    task_type_vocab_size: c.raw.use_task_id === true ? c.size("task_type_vocab_size", 65_536) : 0,
  }),
  embeddings: (c) => ({ ...bertEmbeddings("ernie")(c), taskType: c.task_type_vocab_size > 0 ? "ernie.embeddings.task_type_embeddings" : null }),
  projection: () => null,
  layer: bertLayer("ernie"),
  pooler: "ernie.pooler.dense",
  classifier: "linear",
  positions: "absolute",
  maskedLm: {
    architecture: () => "ErnieForMaskedLM", dense: "cls.predictions.transform.dense", activation: "config", norm: "cls.predictions.transform.LayerNorm",
    bias: "cls.predictions.bias", toEmbedding: false, tied: ["cls.predictions.decoder.weight", "cls.predictions.decoder.bias"],
  },
  foreign: /^cls\./,
};
