/** BERT (modeling_bert.py): also every BERT-architecture Chinese model (bert-base-chinese, chinese-roberta-wwm-ext, MacBERT). */
import type { FamilyFields } from "../config.js";
import type { ConfigReader, Family, LayerNames } from "./family.js";

export const BERT_DEFAULTS = {
  vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  hidden_act: "gelu", hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, classifier_dropout: null,
  max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02, layer_norm_eps: 1e-12, pad_token_id: 0,
};

/** The fields BertConfig and the configs built on it (RoBERTa, ELECTRA, ERNIE) share. */
export function bertFields(c: ConfigReader, act: readonly string[] = ["gelu"]): FamilyFields {
  const hiddenAct = c.str("hidden_act");
  if (!act.includes(hiddenAct)) c.fail(`hidden_act "${hiddenAct}" is not supported (${act.map((a) => `"${a}"`).join(", ")})`);
  if (c.has("position_embedding_type") && c.raw.position_embedding_type !== "absolute") {
    c.fail(`position_embedding_type "${String(c.raw.position_embedding_type)}" is not supported (only "absolute")`);
  }
  const hidden = c.size("hidden_size", 16_384);
  return {
    vocab_size: c.size("vocab_size", 4_000_000),
    hidden_size: hidden,
    embedding_size: hidden,
    num_hidden_layers: c.size("num_hidden_layers", 256),
    num_hidden_groups: 0,
    num_attention_heads: c.size("num_attention_heads", 1024),
    intermediate_size: c.size("intermediate_size", 65_536),
    hidden_act: hiddenAct as FamilyFields["hidden_act"],
    hidden_dropout_prob: c.prob("hidden_dropout_prob"),
    attention_probs_dropout_prob: c.prob("attention_probs_dropout_prob"),
    classifier_dropout: c.raw.classifier_dropout == null ? null : c.prob("classifier_dropout"),
    max_position_embeddings: c.size("max_position_embeddings", 1_048_576),
    type_vocab_size: c.size("type_vocab_size", 65_536),
    initializer_range: c.num("initializer_range"),
    layer_norm_eps: c.num("layer_norm_eps"),
    pad_token_id: c.raw.pad_token_id == null ? 0 : c.size("pad_token_id", 4_000_000, 0),
    task_type_vocab_size: 0,
  };
}

/** BERT's layer names under `<prefix>.encoder.layer.<l>.` (RoBERTa, ELECTRA and ERNIE keep them). */
export function bertLayer(prefix: string): (l: number) => LayerNames {
  return (l) => {
    const p = `${prefix}.encoder.layer.${l}.`;
    return {
      query: `${p}attention.self.query`, key: `${p}attention.self.key`, value: `${p}attention.self.value`,
      attentionOutput: `${p}attention.output.dense`, attentionNorm: `${p}attention.output.LayerNorm`,
      intermediate: `${p}intermediate.dense`, output: `${p}output.dense`, outputNorm: `${p}output.LayerNorm`,
    };
  };
}

export function bertEmbeddings(prefix: string): Family["embeddings"] {
  return () => ({
    word: `${prefix}.embeddings.word_embeddings`, position: `${prefix}.embeddings.position_embeddings`,
    tokenType: `${prefix}.embeddings.token_type_embeddings`, taskType: null, norm: `${prefix}.embeddings.LayerNorm`,
  });
}

export const bert: Family = {
  modelTypes: ["bert"],
  prefix: "bert",
  architecture: () => "BertForSequenceClassification",
  defaults: BERT_DEFAULTS,
  parse: (c) => bertFields(c),
  embeddings: bertEmbeddings("bert"),
  projection: () => null,
  layer: bertLayer("bert"),
  pooler: "bert.pooler.dense",
  classifier: "linear",
  positions: "absolute",
  maskedLm: {
    architecture: () => "BertForMaskedLM", dense: "cls.predictions.transform.dense", activation: "config", norm: "cls.predictions.transform.LayerNorm",
    bias: "cls.predictions.bias", toEmbedding: false, tied: ["cls.predictions.decoder.weight", "cls.predictions.decoder.bias"],
  },
  // BertForPreTraining / BertForMaskedLM heads (bert-base-chinese ships them)
  foreign: /^cls\./,
};
