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
