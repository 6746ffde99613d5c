/**
 * HF's …ForTokenClassification head (BERT-like families): dropout → `classifier` on every token's last hidden state,
 * no pooler. The loss is cross-entropy over the tokens whose label is not −100 (special tokens, padding and a word's
 * later sub-tokens, as run_ner aligns them), averaged over those tokens.
 *
 * The head reads the padded layout [batch·seqLen, hidden] (the model moves a packed batch's rows there), so labels
 * collate the same way as input ids.
 */
import type { Backend, FArray } from "../../backend/types.js";
import { crossEntropy, crossEntropyGrad } from "../../train/loss.js";
import type { DType } from "../params.js";
import { argmax, softmax } from "../../train/metrics.js";
import type { BertConfig } from "../config.js";
import type { DropoutCache, DropoutStream } from "../dropout.js";
import type { EvalOutputs, Head, HeadContext, TaskLoss } from "./head.js";

/** A label that takes no part in the loss or the metrics (torch's CrossEntropyLoss ignore_index). */
export const IGNORE_LABEL = -100;

export interface TokenClassifierCache {
  rows: number;
  dropped: FArray;
  drop: DropoutCache;
}

/** One token's prediction: its tag, the tag's probability, and every tag's (label order). */
export interface TokenPrediction {
  tag: string;
  score: number;
  probabilities: number[];
}

/** Cross-entropy over the rows whose label is not −100, and how many of them are right (token tasks, masked LM). */
export function labelledCrossEntropy(backend: Backend, dtype: DType, logits: FArray, labels: Int32Array, rows: number, classes: number): TaskLoss {
  const r = crossEntropy(backend, dtype, logits, labels, rows, classes);
  let count = 0;
  let correct = 0;
  for (let t = 0; t < rows; t++) {
    if (labels[t]! < 0) continue;
    count++;
    if (argmax(logits, t * classes, classes) === labels[t]) correct++;
  }
  return { sum: r.sum, count, correct, probs: r.probs, grad: (s) => crossEntropyGrad(backend, dtype, r.probs, labels, rows, classes, s) };
}

export type TokenClassificationHead = Head<TokenClassifierCache, null, TokenPrediction>;

export function tokenClassificationHead(config: BertConfig): TokenClassificationHead {
  const H = config.hidden_size;
  const C = config.num_labels;
  const name = "classifier";
  return {
    reads: "tokens",
    linears: [{ name, inF: H, outF: C }],
    outputs: C,
    forward(ctx: HeadContext, features: FArray, rows: number, stream: DropoutStream | null, p: number) {
      const d = ctx.dropout(features, p, rows * H, stream, stream !== null);
      const logits = ctx.linear(name, d.y, rows, H, C, ctx.fresh(rows * C));
      return { logits, cache: { rows, dropped: d.y, drop: d.cache } };
    },
    backward(ctx: HeadContext, dLogits: FArray, c: TokenClassifierCache, needDx: boolean) {
      const d = ctx.linearBack(name, dLogits, c.dropped, c.rows, H, C, needDx);
      return d ? ctx.dropoutBack(d, c.drop, c.rows * H) : null;
    },
    loss: (backend, dtype, logits, { labels }, rows) => labelledCrossEntropy(backend, dtype, logits, labels, rows, C),
    predictRow: (logits, offset) => argmax(logits, offset, C),
    // Token accuracy over the labelled tokens; entity-level scores (seqeval) belong to the NER task's metrics.
    metrics(o: EvalOutputs) {
      let n = 0;
      let right = 0;
      for (let t = 0; t < o.rows; t++) {
        if (o.labels[t]! < 0) continue;
        n++;
        if (o.predictions[t] === o.labels[t]) right++;
      }
      return { metrics: { accuracy: n ? right / n : 0 }, detail: null };
    },
    prediction(row: number[], labelNames: string[]): TokenPrediction {
      const probabilities = softmax(row);
      const best = argmax(probabilities, 0, C);
      return { tag: labelNames[best]!, score: probabilities[best]!, probabilities };
    },
  };
}
