/**
 * The rows the encoder's modules run on (see the header of task-model.ts): a right-padded batch packed (its padding
 * rows left out) or the padded layout itself, the moves between the two, and attention's plan for a layer.
 */
import type { AttentionShape, Backend, FArray } from "../../backend/types.js";
import type { BertConfig } from "../config.js";
import type { PassContext } from "../pass.js";
import type { ModelInput } from "../task-model.js";

/**
 * Where each sequence's tokens are in the rows that every module but attention runs on: packed (the padding rows
 * left out, see task-model.ts's header) or the padded layout itself.
 */
export interface TokenRows {
  /** Rows in all: Σ lengths when packed, else batch·seqLen. */
  rows: number;
  /** First row of each sequence (its [CLS] token). */
  starts: Int32Array;
  /** Rows of each sequence: its real tokens, a few more for the last ones (see tokenRows), or seqLen when not packed. */
  lengths: Int32Array;
  packed: boolean;
}

/** Attention's shape for a layer and the key mask that goes with it ([batch · shape.seqLen], 0 or −∞). */
export interface AttentionPlan {
  shape: AttentionShape;
  keyMask: Float32Array;
}

/** The typed arrays that move between the packed and padded layouts (activations, their bf16 copies, token ids). */
export type RowArray = Float32Array | Float64Array | Uint16Array | Int32Array;

/**
 * Attention's shape and key mask for a pass's layers: every row a query, or [CLS] only (`clsOnly`). A packed batch
 * whose every row is a query tells attention each sequence's length (it may skip the padding) and, where the
 * backend takes them, the packed rows' starts (no move to the padded layout). A backend may take packed rows only at
 * lengths that are multiples of its packedLengthMultiple (the native bf16 kernels' tile of 16); as packed rows do not
 * depend on the padded length, such a backend gets one rounded up (its extra keys masked) rather than the moves.
 */
export function attentionPlan(backend: Backend, config: BertConfig, input: ModelInput, tokens: TokenRows, keyMask: Float32Array, clsOnly: boolean): AttentionPlan {
  const { batch: B, seqLen: T } = input;
  const heads = config.num_attention_heads;
  const shape: AttentionShape = { batch: B, seqLen: T, heads, headDim: config.hidden_size / heads, queryLen: clsOnly ? 1 : T };
  if (!tokens.packed || clsOnly) return { shape, keyMask };
  const packed = { lengths: tokens.lengths, starts: tokens.starts };
  if (backend.packedAttention?.({ ...shape, ...packed })) return { shape: { ...shape, ...packed }, keyMask };
  const multiple = backend.packedLengthMultiple;
  const Tr = Math.ceil(T / multiple) * multiple;
  const rounded: AttentionShape = { ...shape, seqLen: Tr, queryLen: Tr, ...packed };
  if (Tr !== T && backend.packedAttention?.(rounded)) {
    const mask = new Float32Array(B * Tr).fill(-Infinity);
    for (let b = 0; b < B; b++) mask.set(keyMask.subarray(b * T, b * T + T), b * Tr);
    return { shape: rounded, keyMask: mask };
  }
  return { shape: { ...shape, lengths: tokens.lengths }, keyMask };
}

/** The first row of every sequence in x (its [CLS] token): [B, H]. */
export function clsRows(pass: PassContext, x: FArray, tokens: TokenRows): FArray {
  const H = pass.config.hidden_size;
  const out = pass.alloc(tokens.starts.length * H);
  tokens.starts.forEach((start, b) => out.set(x.subarray(start * H, start * H + H), b * H));
  return out;
}

/**
 * Which rows the modules run on: packed when `packTokens` is on and the batch is right-padded (every mask a run of
 * at least one 1, then 0s) with padding to leave out, else the padded layout. A packed batch keeps a multiple of the
 * backend's rowCountMultiple rows, the last sequences keeping some of their padding rows: the native backend builds
 * GEMM kernels per row count, and real token counts would make nearly every batch a new one.
 */
export function tokenRows(backend: Backend, input: ModelInput, packTokens: boolean): TokenRows {
  const { batch: B, seqLen: T, attentionMask: mask } = input;
  const lengths = new Int32Array(B).fill(T);
  let rightPadded = true;
  for (let b = 0; b < B && rightPadded; b++) {
    let n = 0;
    while (n < T && mask[b * T + n]) n++;
    for (let t = n; t < T && rightPadded; t++) rightPadded = !mask[b * T + t];
    rightPadded &&= n > 0;
    lengths[b] = n;
  }
  const real = lengths.reduce((sum, n) => sum + n, 0);
  const multiple = backend.rowCountMultiple;
  const rows = Math.ceil(real / multiple) * multiple;
  const packed = packTokens && rightPadded && rows < B * T;
  if (!packed) lengths.fill(T);
  for (let b = B - 1, extra = rows - real; packed && extra > 0; b--) {
    // padding rows kept are computed as in the padded layout (and, like them, never read by a real token)
    const kept = Math.min(extra, T - lengths[b]!);
    lengths[b] += kept;
    extra -= kept;
  }
  const starts = new Int32Array(B);
  for (let b = 1; b < B; b++) starts[b] = starts[b - 1]! + lengths[b - 1]!;
  return { rows: packed ? rows : B * T, starts, lengths, packed };
}

/** src's rows (packed, `width` values each) into the padded layout dst [B·T, width], padding rows zeroed. */
export function toPadded<A extends RowArray>(src: A, dst: A, width: number, tokens: TokenRows, T: number): A {
  tokens.starts.forEach((start, b) => {
    const n = tokens.lengths[b]!;
    dst.set(src.subarray(start * width, (start + n) * width), b * T * width);
    dst.fill(0, (b * T + n) * width, (b + 1) * T * width);
  });
  return dst;
}

/** The real tokens' rows of the padded src [B·T, width] into packed dst. */
export function toPacked<A extends RowArray>(src: A, dst: A, width: number, tokens: TokenRows, T: number): A {
  tokens.starts.forEach((start, b) => dst.set(src.subarray(b * T * width, (b * T + tokens.lengths[b]!) * width), start * width));
  return dst;
}
