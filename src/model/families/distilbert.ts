/**
 * DistilBERT (modular_distilbert.py): its own config and parameter names, no token types, every LayerNorm eps
 * 1e-12 (hard-coded there), no pooler; the head is pre_classifier → ReLU → dropout → classifier.
 */
import type { Family } from "./family.js";

export const distilbert: Family = {
  modelTypes: ["distilbert"],
  prefix: "distilbert",
  architecture: () => "DistilBertForSequenceClassification",
  defaults: {
    vocab_size: 30522, max_position_embeddings: 512, sinusoidal_pos_embds: false, n_layers: 6, n_heads: 12, dim: 768,
    hidden_dim: 3072, dropout: 0.1, attention_dropout: 0.1, activation: "gelu", initializer_range: 0.02,
    seq_classif_dropout: 0.2, pad_token_id: 0,
  },
  parse: (c) => {
    if (c.raw.sinusoidal_pos_embds === true) c.fail("sinusoidal_pos_embds true is not supported (learned position embeddings only)");
    const act = c.str("activation");
    if (act !== "gelu") c.fail(`activation "${act}" is not supported (only "gelu")`);
    const dim = c.size("dim", 16_384);
    return {
      vocab_size: c.size("vocab_size", 4_000_000), hidden_size: dim, embedding_size: dim,
      num_hidden_layers: c.size("n_layers", 256), num_hidden_groups: 0, num_attention_heads: c.size("n_heads", 1024),
      intermediate_size: c.size("hidden_dim", 65_536), hidden_act: "gelu", hidden_dropout_prob: c.prob("dropout"),
      attention_probs_dropout_prob: c.prob("attention_dropout"), classifier_dropout: c.prob("seq_classif_dropout"),
      max_position_embeddings: c.size("max_position_embeddings", 1_048_576), type_vocab_size: 0,
      initializer_range: c.num("initializer_range"), layer_norm_eps: 1e-12,
      pad_token_id: c.raw.pad_token_id == null ? 0 : c.size("pad_token_id", 4_000_000, 0), task_type_vocab_size: 0,
    };
  },
  embeddings: () => ({
    word: "distilbert.embeddings.word_embeddings", position: "distilbert.embeddings.position_embeddings",
    tokenType: null, taskType: null, norm: "distilbert.embeddings.LayerNorm",
  }),
  projection: () => null,
  layer: (l) => {
    const p = `distilbert.transformer.layer.${l}.`;
    return {
      query: `${p}attention.q_lin`, key: `${p}attention.k_lin`, value: `${p}attention.v_lin`,
      attentionOutput: `${p}attention.out_lin`, attentionNorm: `${p}sa_layer_norm`,
      intermediate: `${p}ffn.lin1`, output: `${p}ffn.lin2`, outputNorm: `${p}output_layer_norm`,
    };
  },
  pooler: null,
  classifier: "pre-relu",
  positions: "absolute",
  maskedLm: {
    architecture: () => "DistilBertForMaskedLM", dense: "vocab_transform", activation: "gelu", norm: "vocab_layer_norm",
    bias: "vocab_projector.bias", toEmbedding: false, tied: ["vocab_projector.weight"],
  },
  // DistilBertForMaskedLM's vocab_transform / vocab_layer_norm / vocab_projector
  foreign: /^vocab_/,
};
