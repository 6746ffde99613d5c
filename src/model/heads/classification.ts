/**
 * The sequence-classification heads of the families (HF's …ForSequenceClassification), on each sequence's first
 * token (through the pooler where the family has one):
 * - linear: dropout → classifier (BERT, ERNIE, ALBERT on their pooler)
 * - dense-tanh / dense-gelu: dropout → classifier.dense → tanh|GELU → dropout → classifier.out_proj (RoBERTa, ELECTRA)
 * - pre-relu: pre_classifier → ReLU → dropout → classifier (DistilBERT)
 * Single-label, multi-label and regression differ only in the loss and in what predict prints (../../tasks).
 */
import type { Backend, FArray } from "../../backend/types.js";
import { bceWithLogits, bceWithLogitsGrad, crossEntropy, crossEntropyGrad, squaredError, squaredErrorGrad } from "../../train/loss.js";
import { argmax, type ClassificationMetrics, classificationMetrics, multiLabelMetrics, regressionMetrics, softmax } from "../../train/metrics.js";
import type { BertConfig } from "../config.js";
import type { DropoutCache, DropoutStream } from "../dropout.js";
import type { DType } from "../params.js";
import type { BatchLabels, EvalOutputs, Head, HeadContext, HeadLinear, TaskLoss } from "./head.js";

export type ClassifierKind = "linear" | "dense-tanh" | "dense-gelu" | "pre-relu";

export interface ClassifierCache {
  rows: number;
  /** The hidden → hidden Linear of two-layer heads: its input and output (null for a single Linear). */
  first: { input: FArray; output: FArray } | null;
  /** That Linear's activation output (tanh's backward reads it). */
  act: FArray | null;
  /** The last Linear's input (after dropout) and that dropout. */
  dropped: FArray;
  drop: DropoutCache;
  /** The dropout before the first Linear (RoBERTa, ELECTRA). */
  drop0: DropoutCache | null;
}

/** The head's Linear modules, input to output. */
export function classifierLinears(kind: ClassifierKind, hidden: number, labels: number): HeadLinear[] {
  const out = (name: string): HeadLinear => ({ name, inF: hidden, outF: labels });
  const dense = (name: string): HeadLinear => ({ name, inF: hidden, outF: hidden });
  switch (kind) {
    case "linear":
      return [out("classifier")];
    case "dense-tanh":
    case "dense-gelu":
      return [dense("classifier.dense"), out("classifier.out_proj")];
    case "pre-relu":
      return [dense("pre_classifier"), out("classifier")];
  }
}

/** What predict prints for a row. */
export interface ClassPrediction {
  /** The top class (null for regression). */
  label: string | null;
  /** Its probability, or the regression value. */
  score: number;
  probabilities: Record<string, number>;
  logits: number[];
  /** Multi-label models: every label whose probability reaches the threshold. */
  labels?: string[];
}

export type SequenceClassificationHead = Head<ClassifierCache, ClassificationMetrics, ClassPrediction>;

/**
 * The loss of config.problem_type (read at each call: training settles it from the labels after the model is built):
 * cross-entropy, BCE-with-logits (multi-label: a row is right when every label is, at the threshold) or MSE.
 */
function classificationLoss(backend: Backend, dtype: DType, problemType: string | null | undefined, logits: FArray, { labels, targets }: BatchLabels, rows: number, classes: number, threshold: number): TaskLoss {
  if (problemType === "regression") {
    if (!targets) throw new Error("regression needs targets");
    return { sum: squaredError(logits, targets, rows), count: rows, correct: 0, probs: logits, grad: (s) => squaredErrorGrad(dtype, logits, targets, rows, s) };
  }
  if (problemType === "multi_label_classification") {
    if (!targets) throw new Error("multi-label classification needs targets");
    const r = bceWithLogits(dtype, logits, targets, rows, classes);
    let correct = 0;
    for (let b = 0; b < rows; b++) {
      let all = true;
      for (let c = 0; c < classes; c++) if ((r.probs[b * classes + c]! >= threshold) !== (targets[b * classes + c]! >= 0.5)) all = false;
      if (all) correct++;
    }
    return { sum: r.sum, count: rows, correct, probs: r.probs, grad: (s) => bceWithLogitsGrad(dtype, r.probs, targets, rows, classes, s) };
  }
  const r = crossEntropy(backend, dtype, logits, labels, rows, classes);
  let correct = 0;
  for (let b = 0; b < rows; b++) if (argmax(logits, b * classes, classes) === labels[b]) correct++;
  return { sum: r.sum, count: rows, correct, probs: r.probs, grad: (s) => crossEntropyGrad(backend, dtype, r.probs, labels, rows, classes, s) };
}

export function sequenceClassificationHead(kind: ClassifierKind, config: BertConfig): SequenceClassificationHead {
  const H = config.hidden_size;
  const C = config.num_labels;
  const linears = classifierLinears(kind, H, C);
  const last = linears.at(-1)!.name;
  const first = linears.length > 1 ? linears[0]!.name : null;
  return {
    reads: "first",
    linears,
    outputs: C,
    forward(ctx: HeadContext, features: FArray, rows: number, stream: DropoutStream | null, p: number) {
      const train = stream !== null;
      const logits = ctx.fresh(rows * C);
      if (!first) {
        const d = ctx.dropout(features, p, rows * H, stream, train);
        ctx.linear(last, d.y, rows, H, C, logits);
        return { logits, cache: { rows, first: null, act: null, dropped: d.y, drop: d.cache, drop0: null } };
      }
      const d0 = kind === "pre-relu" ? null : ctx.dropout(features, p, rows * H, stream, train);
      const input = d0 ? d0.y : features;
      const dense = ctx.linear(first, input, rows, H, H);
      const act = ctx.alloc(rows * H);
      if (kind === "dense-tanh") ctx.backend.tanhForward(dense, act, rows * H);
      else if (kind === "dense-gelu") ctx.backend.geluForward(dense, act, rows * H);
      else ctx.backend.activationForward("relu", dense, act, rows * H);
      const d = ctx.dropout(act, p, rows * H, stream, train);
      ctx.linear(last, d.y, rows, H, C, logits);
      return { logits, cache: { rows, first: { input, output: dense }, act, dropped: d.y, drop: d.cache, drop0: d0?.cache ?? null } };
    },
    backward(ctx: HeadContext, dLogits: FArray, c: ClassifierCache, needDx: boolean) {
      const n = c.rows * H;
      const needAct = first !== null && (needDx || ctx.isTrainable(`${first}.weight`));
      const dDropped = ctx.linearBack(last, dLogits, c.dropped, c.rows, H, C, first ? needAct : needDx);
      if (!dDropped) return null;
      if (!first) return ctx.dropoutBack(dDropped, c.drop, n);
      const dAct = ctx.dropoutBack(dDropped, c.drop, n);
      const dDense = ctx.alloc(n);
      if (kind === "dense-tanh") ctx.backend.tanhBackward(c.act!, dAct, dDense, n);
      else if (kind === "dense-gelu") ctx.backend.geluBackward(c.first!.output, dAct, dDense, n);
      else ctx.backend.activationBackward("relu", c.first!.output, dAct, dDense, n);
      const dIn = ctx.linearBack(first, dDense, c.first!.input, c.rows, H, H, needDx);
      if (!dIn) return null;
      return c.drop0 ? ctx.dropoutBack(dIn, c.drop0, n) : dIn;
    },
    loss: (backend, dtype, logits, batch, rows, threshold) => classificationLoss(backend, dtype, config.problem_type, logits, batch, rows, C, threshold),
    predictRow: (logits, offset) => argmax(logits, offset, C),
    metrics(o: EvalOutputs, labelNames: string[], threshold: number) {
      if (config.problem_type === "regression") return { metrics: { ...regressionMetrics(o.targets, o.logits) }, detail: null };
      if (config.problem_type === "multi_label_classification") return { metrics: { ...multiLabelMetrics(o.targets, o.probabilities, o.rows, C, threshold) }, detail: null };
      const detail = classificationMetrics(o.labels, o.predictions, labelNames);
      const { per_class: _p, confusion: _c, ...scalars } = detail;
      return { metrics: scalars, detail };
    },
    prediction(row: number[], labelNames: string[], opts: { threshold: number; topLabels?: number }): ClassPrediction {
      if (config.problem_type === "regression") return { label: null, score: row[0]!, probabilities: {}, logits: row };
      const multi = config.problem_type === "multi_label_classification";
      const probs = multi ? row.map((v) => 1 / (1 + Math.exp(-v))) : softmax(row);
      const best = argmax(probs, 0, C);
      const top = new Set(probs.map((p, c) => [p, c] as const).sort((a, b) => b[0] - a[0]).slice(0, opts.topLabels ?? C).map(([, c]) => c));
      return {
        label: labelNames[best]!,
        score: probs[best]!,
        // in label order (id2label's), the top N of them with topLabels
        probabilities: Object.fromEntries(labelNames.flatMap((l, c) => (top.has(c) ? [[l, probs[c]!] as const] : []))),
        logits: row,
        ...(multi ? { labels: labelNames.filter((_, c) => probs[c]! >= opts.threshold) } : {}),
      };
    },
  };
}
