/**
 * RoBERTa and XLM-RoBERTa (modular_roberta.py, modular_xlm_roberta.py): BERT's layers under `roberta.`, position
 * ids that start after padding_idx, no pooler, and RobertaClassificationHead on `<s>`.
 */
import type { Family } from "./family.js";
import { BERT_DEFAULTS, bertEmbeddings, bertFields, bertLayer } from "./bert.js";

export const roberta: Family = {
  modelTypes: ["roberta", "xlm-roberta"],
  prefix: "roberta",
  architecture: (t) => (t === "xlm-roberta" ? "XLMRobertaForSequenceClassification" : "RobertaForSequenceClassification"),
  defaults: { ...BERT_DEFAULTS, vocab_size: 50265, pad_token_id: 1, bos_token_id: 0, eos_token_id: 2 },
  parse: (c) => bertFields(c),
  embeddings: bertEmbeddings("roberta"),
  projection: () => null,
  layer: bertLayer("roberta"),
  pooler: null,
  classifier: "dense-tanh",
  positions: "after-padding",
  maskedLm: {
    architecture: (t) => (t === "xlm-roberta" ? "XLMRobertaForMaskedLM" : "RobertaForMaskedLM"), dense: "lm_head.dense", activation: "gelu",
    norm: "lm_head.layer_norm", bias: "lm_head.bias", toEmbedding: false, tied: ["lm_head.decoder.weight", "lm_head.decoder.bias"],
  },
  // RobertaForMaskedLM's lm_head; a pooler that some base checkpoints carry
  foreign: /^(lm_head\.|roberta\.pooler\.)/,
};
