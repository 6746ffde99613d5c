/**
 * The head contract: a task head sits on the encoder's output and is chosen by the task (src/model/task.ts), never by
 * the family. Its module side (this file's Head) says which rows it reads, declares its parameters and runs forward
 * and backward on services the model lends it (HeadContext), so it never touches arenas or gradient bookkeeping. Its
 * task side (TaskHead) turns logits into a loss, metrics and predictions, and a batch's examples into labels.
 */
import type { Backend, FArray } from "../../backend/types.js";
import type { BertConfig } from "../config.js";
import type { DropoutCache, DropoutStream } from "../dropout.js";
import type { DType } from "../params.js";

/** What the model lends a head: its Linear modules on the model's parameters, buffers and dropout. */
export interface HeadContext {
  readonly backend: Backend;
  readonly config: BertConfig;
  /** A buffer of the current pass (stale contents: overwrite it fully). */
  alloc(n: number): FArray;
  /** A buffer that outlives the pass (what the head returns). */
  fresh(n: number): FArray;
  /** y = x Wᵀ + b for the Linear named `prefix`, into y when given. */
  linear(prefix: string, x: FArray, rows: number, inF: number, outF: number, y?: FArray): FArray;
  /** Its backward: accumulates the trainable weights' gradients, returns dx when asked. */
  linearBack(prefix: string, dy: FArray, x: FArray, rows: number, inF: number, outF: number, needDx: boolean): FArray | null;
  dropout(x: FArray, p: number, n: number, stream: DropoutStream | null, save: boolean): { y: FArray; cache: DropoutCache };
  dropoutBack(dy: FArray, c: DropoutCache, n: number): FArray;
  isTrainable(name: string): boolean;
  /** A parameter's values, and its gradient buffer (null when frozen), for heads that use parameters outside their Linears (the tied decoder). */
  w(name: string): FArray;
  g(name: string): FArray | null;
}

/** One Linear of a head: HF state-dict prefix, input and output width. */
export interface HeadLinear {
  name: string;
  inF: number;
  outF: number;
}

/** A batch's labels as collate (data/dataset.ts) gathers them from the examples. */
export interface BatchLabels {
  /** Class ids (−1 where a row has none). */
  labels: Int32Array;
  /** Multi-hot rows or regression values, when the task has them. */
  targets: Float32Array | null;
}

/** The loss on a batch's logits, with what the trainer reports alongside it. */
export interface TaskLoss {
  /** Sum over rows of each row's loss. */
  sum: number;
  /** What the loss averages over: rows (sequence tasks), or labelled tokens (token tasks). */
  count: number;
  /** Rows (or labelled tokens) predicted right. */
  correct: number;
  /** The probabilities the metrics and predictions read (the logits themselves for regression). */
  probs: FArray;
  /** d(scale · sum)/d logits. */
  grad(scale: number): FArray;
}

/** Everything an evaluation saw, row by row (rows × outputs where a row has several values). */
export interface EvalOutputs {
  rows: number;
  logits: Float32Array;
  probabilities: Float32Array;
  predictions: Int32Array;
  labels: Int32Array;
  targets: Float32Array;
}

export interface Head<Cache = unknown, Detail = unknown, Pred = unknown> {
  /**
   * The encoder rows it reads. "first": each sequence's first token, through the family's pooler where it has one;
   * the model then runs the last layer's queries, feed-forward and LayerNorms for those rows only. "tokens": every
   * token's last hidden state in the padded layout [batch·seqLen, hidden] (padding rows 0), no pooler; the last
   * layer runs in full (NER; QA to come). "selected": the rows ModelInput.selected names (masked LM's masked
   * positions), [selected, hidden], no pooler.
   */
  readonly reads: "first" | "tokens" | "selected";
  /** Its Linears, in HF's registration order. */
  readonly linears: readonly HeadLinear[];
  /** Its other parameters (a LayerNorm, a standalone bias), after the Linears. */
  readonly others?: readonly { name: string; shape: number[]; kind: "norm" | "bias" }[];
  /** Checkpoint names that are tied copies of other parameters (HF drops them on save; older checkpoints hold them). */
  readonly tied?: readonly string[];
  /** Logits per row read. */
  readonly outputs: number;
  /** logits [rows, outputs] from the features [rows, hidden]; `p` is the head's dropout probability. */
  forward(ctx: HeadContext, features: FArray, rows: number, stream: DropoutStream | null, p: number): { logits: FArray; cache: Cache };
  /** d features from d logits (null when not needed below: needDx false). */
  backward(ctx: HeadContext, dLogits: FArray, cache: Cache, needDx: boolean): FArray | null;

  // The task side.
  /** The loss of `rows` rows of logits against their labels; `threshold` is the multi-label decision threshold. */
  loss(backend: Backend, dtype: DType, logits: FArray, batch: BatchLabels, rows: number, threshold: number): TaskLoss;
  /** The prediction of one row (argmax for classes). */
  predictRow(logits: FArray, offset: number): number;
  /** The task's metrics (HF's names, without the eval_ prefix) and any detail reports beside them. */
  metrics(o: EvalOutputs, labelNames: string[], threshold: number): { metrics: Record<string, number>; detail: Detail | null };
  /** What predict prints for one row of logits. */
  prediction(logits: number[], labelNames: string[], opts: { threshold: number; topLabels?: number }): Pred;
}

export type HeadFactory = (config: BertConfig) => Head;
