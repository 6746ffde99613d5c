/**
 * ELECTRA (modeling_electra.py), the discriminator: embeddings `embedding_size` wide projected to `hidden_size` by
 * `electra.embeddings_project` when the two differ, BERT's layers, no pooler, ElectraClassificationHead (GELU).
 */
import type { Family } from "./family.js";
import { BERT_DEFAULTS, bertEmbeddings, bertFields, bertLayer } from "./bert.js";

export const electra: Family = {
  modelTypes: ["electra"],
  prefix: "electra",
  architecture: () => "ElectraForSequenceClassification",
  defaults: { ...BERT_DEFAULTS, embedding_size: 128, hidden_size: 256, num_attention_heads: 4, intermediate_size: 1024 },
  parse: (c) => ({ ...bertFields(c), embedding_size: c.size("embedding_size", 16_384) }),
  embeddings: bertEmbeddings("electra"),
  projection: (c) => (c.embedding_size !== c.hidden_size ? "electra.embeddings_project" : null),
  layer: bertLayer("electra"),
  pooler: null,
  classifier: "dense-gelu",
  positions: "absolute",
  // ElectraForMaskedLM: the generator's head
  maskedLm: {
    architecture: () => "ElectraForMaskedLM", dense: "generator_predictions.dense", activation: "gelu", norm: "generator_predictions.LayerNorm",
    bias: "generator_lm_head.bias", toEmbedding: true, tied: ["generator_lm_head.weight"],
  },
  // the pretraining discriminator/generator heads
  foreign: /^(discriminator_predictions\.|generator|electra\.pooler\.)/,
};
