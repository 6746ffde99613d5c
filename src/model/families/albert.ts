/**
 * ALBERT (modeling_albert.py): factorized embeddings (`embedding_size` wide, then
 * `encoder.embedding_hidden_mapping_in`), `num_hidden_groups` layer groups shared by the `num_hidden_layers`
 * applications (layer i uses group ⌊i / (L / G)⌋; a shared layer's gradient is the sum over its uses), gelu_new,
 * a pooler named `albert.pooler` (a plain Linear).
 */
import type { Family } from "./family.js";
import { BERT_DEFAULTS } from "./bert.js";

export const albert: Family = {
  modelTypes: ["albert"],
  prefix: "albert",
  architecture: () => "AlbertForSequenceClassification",
  defaults: {
    ...BERT_DEFAULTS, vocab_size: 30000, embedding_size: 128, hidden_size: 4096, num_hidden_groups: 1, num_attention_heads: 64,
    intermediate_size: 16384, inner_group_num: 1, hidden_act: "gelu_new", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
    classifier_dropout_prob: 0.1, pad_token_id: 0,
  },
  parse: (c) => {
    const act = c.str("hidden_act");
    if (act !== "gelu_new" && act !== "gelu") c.fail(`hidden_act "${act}" is not supported ("gelu_new", "gelu")`);
    const layers = c.size("num_hidden_layers", 256);
    const groups = c.size("num_hidden_groups", layers);
    if (layers % groups !== 0) c.fail(`num_hidden_groups ${groups} does not divide num_hidden_layers ${layers}`);
    if (c.size("inner_group_num", 64) !== 1) c.fail("inner_group_num other than 1 is not supported");
    const hidden = c.size("hidden_size", 16_384);
    return {
      vocab_size: c.size("vocab_size", 4_000_000), hidden_size: hidden, embedding_size: c.size("embedding_size", 16_384),
      num_hidden_layers: layers, num_hidden_groups: groups, num_attention_heads: c.size("num_attention_heads", 1024),
      intermediate_size: c.size("intermediate_size", 65_536), hidden_act: act as "gelu" | "gelu_new", hidden_dropout_prob: c.prob("hidden_dropout_prob"),
      attention_probs_dropout_prob: c.prob("attention_probs_dropout_prob"), classifier_dropout: c.prob("classifier_dropout_prob"),
      max_position_embeddings: c.size("max_position_embeddings", 1_048_576), type_vocab_size: c.size("type_vocab_size", 65_536),
      initializer_range: c.num("initializer_range"), layer_norm_eps: c.num("layer_norm_eps"),
      pad_token_id: c.raw.pad_token_id == null ? 0 : c.size("pad_token_id", 4_000_000, 0), task_type_vocab_size: 0,
    };
  },
  embeddings: () => ({
    word: "albert.embeddings.word_embeddings", position: "albert.embeddings.position_embeddings",
    tokenType: "albert.embeddings.token_type_embeddings", taskType: null, norm: "albert.embeddings.LayerNorm",
  }),
  // HF creates the mapping whatever the sizes (a Linear E → H even when they are equal)
  projection: () => "albert.encoder.embedding_hidden_mapping_in",
  layer: (g) => {
    const p = `albert.encoder.albert_layer_groups.${g}.albert_layers.0.`;
    return {
      query: `${p}attention.query`, key: `${p}attention.key`, value: `${p}attention.value`,
      attentionOutput: `${p}attention.dense`, attentionNorm: `${p}attention.LayerNorm`,
      intermediate: `${p}ffn`, output: `${p}ffn_output`, outputNorm: `${p}full_layer_layer_norm`,
    };
  },
  pooler: "albert.pooler",
  classifier: "linear",
  positions: "absolute",
  maskedLm: {
    architecture: () => "AlbertForMaskedLM", dense: "predictions.dense", activation: "config", norm: "predictions.LayerNorm",
    bias: "predictions.bias", toEmbedding: true, tied: ["predictions.decoder.weight", "predictions.decoder.bias"],
  },
  // AlbertForPreTraining / AlbertForMaskedLM heads
  foreign: /^(predictions\.|sop_classifier\.)/,
};
