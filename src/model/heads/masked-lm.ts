/**
 * HF's …ForMaskedLM head (BertOnlyMLMHead, RobertaLMHead, DistilBERT's vocab_*, AlbertMLMHead; names per family in
 * families/*.ts): h = LayerNorm(act(dense(x))), logits = h · Eᵀ + bias, where E is the word embedding itself (the
 * tied decoder: one parameter, so its gradient is the sum of the lookup's and the decoder's, and it is saved once).
 *
 * It reads only the selected rows (Head.reads "selected": the masked positions in training, the [MASK] tokens in
 * fill-mask). HF projects every token onto the vocabulary and ignores all but the labelled ones; projecting those
 * alone gives the same loss and gradients with a fraction of the largest GEMM (vocab × hidden per token).
 */
import type { FArray } from "../../backend/types.js";
import { argmax, softmax } from "../../train/metrics.js";
import type { BertConfig } from "../config.js";
import type { DropoutStream } from "../dropout.js";
import type { Family } from "../families/family.js";
import type { EvalOutputs, Head, HeadContext } from "./head.js";
import { labelledCrossEntropy } from "./token-classification.js";

export interface MaskedLmCache {
  rows: number;
  x: FArray;
  dense: FArray;
  act: FArray;
  mean: FArray;
  rstd: FArray;
  h: FArray;
}

/** One candidate for a masked position, as FillMaskPipeline returns it before decoding. */
export interface MaskCandidate {
  token: number;
  score: number;
}

export type MaskedLmHead = Head<MaskedLmCache, null, MaskCandidate[]>;

export function maskedLmHead(family: Family, config: BertConfig): MaskedLmHead {
  const names = family.maskedLm;
  if (!names) throw new Error(`${config.model_type} has no masked-LM head`);
  const H = config.hidden_size;
  const W = names.toEmbedding ? config.embedding_size : H;
  const V = config.vocab_size;
  const decoder = `${family.embeddings(config).word}.weight`;
  const act = names.activation === "config" ? config.hidden_act : "gelu";
  return {
    reads: "selected",
    linears: [{ name: names.dense, inF: H, outF: W }],
    others: [
      { name: `${names.norm}.weight`, shape: [W], kind: "norm" },
      { name: `${names.norm}.bias`, shape: [W], kind: "norm" },
      { name: names.bias, shape: [V], kind: "bias" },
    ],
    tied: names.tied,
    outputs: V,
    // The head has no dropout (HF's transform has none).
    forward(ctx: HeadContext, x: FArray, rows: number, _stream: DropoutStream | null) {
      const { backend } = ctx;
      const dense = ctx.linear(names.dense, x, rows, H, W);
      const a = ctx.alloc(rows * W);
      if (act === "gelu") backend.geluForward(dense, a, rows * W);
      else backend.activationForward(act, dense, a, rows * W);
      const h = ctx.alloc(rows * W);
      const mean = ctx.alloc(rows);
      const rstd = ctx.alloc(rows);
      backend.layerNormForward(a, ctx.w(`${names.norm}.weight`), ctx.w(`${names.norm}.bias`), h, mean, rstd, rows, W, config.layer_norm_eps);
      const logits = ctx.fresh(rows * V);
      backend.linearForward(h, ctx.w(decoder), ctx.w(names.bias), logits, rows, W, V);
      return { logits, cache: { rows, x, dense, act: a, mean, rstd, h } };
    },
    backward(ctx: HeadContext, dLogits: FArray, c: MaskedLmCache, needDx: boolean) {
      const { backend } = ctx;
      const n = c.rows * W;
      const below = needDx || ctx.isTrainable(`${names.dense}.weight`) || ctx.isTrainable(`${names.norm}.weight`);
      const dh = below ? ctx.alloc(n) : null;
      // The tied decoder: its weight gradient adds to the word embedding's (zeroed per step, the lookup adds its own)
      backend.linearBackward(dLogits, c.h, ctx.w(decoder), dh, ctx.g(decoder), ctx.g(names.bias), c.rows, W, V, { overwriteGrads: false });
      if (!dh) return null;
      const dAct = ctx.alloc(n);
      backend.layerNormBackward(dh, c.act, c.mean, c.rstd, ctx.w(`${names.norm}.weight`), dAct, ctx.g(`${names.norm}.weight`), ctx.g(`${names.norm}.bias`), c.rows, W);
      const dDense = ctx.alloc(n);
      if (act === "gelu") backend.geluBackward(c.dense, dAct, dDense, n);
      else backend.activationBackward(act, c.dense, dAct, dDense, n);
      return ctx.linearBack(names.dense, dDense, c.x, c.rows, H, W, needDx);
    },
    loss: (backend, dtype, logits, { labels }, rows) => labelledCrossEntropy(backend, dtype, logits, labels, rows, V),
    predictRow: (logits, offset) => argmax(logits, offset, V),
    // run_mlm's accuracy over the masked tokens (perplexity comes from the loss, see evaluate)
    metrics(o: EvalOutputs) {
      let right = 0;
      for (let t = 0; t < o.rows; t++) if (o.predictions[t] === o.labels[t]) right++;
      return { metrics: { accuracy: o.rows ? right / o.rows : 0 }, detail: null };
    },
    /** The top `topLabels` (default 5) tokens with their probabilities, as FillMaskPipeline's top_k. */
    prediction(row: number[], _labels: string[], opts: { topLabels?: number }): MaskCandidate[] {
      const p = softmax(row);
      return topK(p, opts.topLabels ?? 5).map((token) => ({ token, score: p[token]! }));
    },
  };
}

/** Indices of the k largest values, largest first (ties: the lower index first, as torch.topk on CPU returns them). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (best.length === k && v <= values[best[k - 1]!]!) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && values[best[at - 1]!]! < v) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}
