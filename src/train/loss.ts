/** Loss functions on the classifier's logits. */
import type { Backend, FArray } from "../backend/types.js";
import { allocFloat, type DType } from "../model/params.js";

export interface LossResult {
  /** Sum of per-example losses. */
  sum: number;
  probs: FArray;
}

/** Softmax cross-entropy (torch.nn.CrossEntropyLoss without reduction: the caller divides). */
export function crossEntropy(backend: Backend, dtype: DType, logits: FArray, labels: Int32Array, rows: number, classes: number): LossResult {
  const probs = allocFloat(dtype, rows * classes);
  const sum = backend.crossEntropyForward(logits, labels, probs, rows, classes);
  return { sum, probs };
}

/** d(scale · Σ loss)/d logits. */
export function crossEntropyGrad(backend: Backend, dtype: DType, probs: FArray, labels: Int32Array, rows: number, classes: number, scale: number): FArray {
  const d = allocFloat(dtype, rows * classes);
  backend.crossEntropyBackward(probs, labels, d, rows, classes, scale);
  return d;
}

/**
 * BCEWithLogits for multi-label classification (HF: mean over batch × labels). Returns the sum over rows of each
 * row's mean over labels, and the sigmoid probabilities.
 */
export function bceWithLogits(dtype: DType, logits: FArray, targets: Float32Array, rows: number, classes: number): LossResult {
  const probs = allocFloat(dtype, rows * classes);
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    let row = 0;
    for (let c = 0; c < classes; c++) {
      const x = logits[r * classes + c]!;
      const y = targets[r * classes + c]!;
      row += Math.max(x, 0) - x * y + Math.log1p(Math.exp(-Math.abs(x)));
      probs[r * classes + c] = 1 / (1 + Math.exp(-x));
    }
    sum += row / classes;
  }
  return { sum, probs };
}

export function bceWithLogitsGrad(dtype: DType, probs: FArray, targets: Float32Array, rows: number, classes: number, scale: number): FArray {
  const d = allocFloat(dtype, rows * classes);
  for (let i = 0; i < rows * classes; i++) d[i] = ((probs[i]! - targets[i]!) / classes) * scale;
  return d;
}

/** Squared error for regression (HF: MSELoss over the batch with num_labels 1); returns the summed loss. */
export function squaredError(logits: FArray, targets: Float32Array, rows: number): number {
  let sum = 0;
  for (let r = 0; r < rows; r++) sum += (logits[r]! - targets[r]!) ** 2;
  return sum;
}

export function squaredErrorGrad(dtype: DType, logits: FArray, targets: Float32Array, rows: number, scale: number): FArray {
  const d = allocFloat(dtype, rows);
  for (let r = 0; r < rows; r++) d[r] = 2 * (logits[r]! - targets[r]!) * scale;
  return d;
}

/** d/dlogits of cross-entropy against a target distribution: (p − target(y, c)) · weight(y) · scale per row whose label y ≥ 0 (rows below 0 stay 0). */
function softmaxGrad(dtype: DType, probs: FArray, labels: Int32Array, rows: number, classes: number, scale: number,
  target: (y: number, c: number) => number, weight: (y: number) => number): FArray {
  const d = allocFloat(dtype, rows * classes);
  for (let r = 0; r < rows; r++) {
    const y = labels[r]!;
    if (y < 0) continue;
    const w = weight(y);
    for (let c = 0; c < classes; c++) d[r * classes + c] = (probs[r * classes + c]! - target(y, c)) * w * scale;
  }
  return d;
}

/**
 * HF Trainer's LabelSmoother on softmax probabilities (labels < 0 ignored): (1−ε)·NLL + ε·mean over classes of
 * −log p, each averaged over the active rows; as a sum over rows (the trainer divides), and its gradient
 * d/dlogits = p − ((1−ε)·onehot + ε/C) per active row.
 */
export function labelSmoothed(dtype: DType, probs: FArray, labels: Int32Array, rows: number, classes: number, eps: number): { sum: number; grad(scale: number): FArray } {
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const y = labels[r]!;
    if (y < 0) continue;
    let all = 0;
    for (let c = 0; c < classes; c++) all += -Math.log(probs[r * classes + c]!);
    sum += (1 - eps) * -Math.log(probs[r * classes + y]!) + (eps * all) / classes;
  }
  return {
    sum,
    grad: (scale) => softmaxGrad(dtype, probs, labels, rows, classes, scale, (y, c) => (c === y ? 1 - eps : 0) + eps / classes, () => 1),
  };
}

/** torch's CrossEntropyLoss(weight=w) on softmax probabilities: each row's loss and gradient times its class's weight, as a sum over rows (the trainer divides by Σ w). */
export function classWeighted(dtype: DType, probs: FArray, labels: Int32Array, rows: number, classes: number, w: number[]): { sum: number; grad(scale: number): FArray } {
  let sum = 0;
  for (let r = 0; r < rows; r++) sum += w[labels[r]!]! * -Math.log(probs[r * classes + labels[r]!]!);
  return {
    sum,
    grad: (scale) => softmaxGrad(dtype, probs, labels, rows, classes, scale, (y, c) => (c === y ? 1 : 0), (y) => w[y]!),
  };
}
