/**
 * The native backend: the C++ addon (native/*.cc, built by node-gyp at install) behind the Backend
 * interface. float32 only; `--precision bf16` runs the GEMMs in bf16 with fp32 accumulation while weights,
 * optimizer state, LayerNorm/softmax statistics and the residual stream stay fp32; tensors that feed only GEMMs
 * and GELU live as bf16 copies (Bf16Copy), as torch.autocast keeps them.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Backend, Bf16Copy, FArray } from "./types.js";

export interface NativeLoadOptions {
  precision: "fp32" | "bf16";
  threads?: number;
}

/** What the addon's info() reports. */
export interface NativeInfo {
  /** oneDNN's version. */
  onednn: string;
  /** OpenMP threads the kernels run on. */
  threads: number;
  /** Whether the last configure() chose bf16 GEMMs. */
  bf16: boolean;
  /** Whether oneDNN has bf16 GEMMs on this CPU. */
  bf16Supported: boolean;
  /** The bf16 per-head attention kernels' tile along the sequence (Backend.packedLengthMultiple). */
  attentionTile: number;
}

type F32 = Float32Array;
/** A bf16 copy's buffer (or null); where a flag follows it, the flag says whether it is filled (see copyArgs). */
type Copy = Uint16Array | null;
/** A Bf16Copy as two arguments: its buffer and whether it is filled. */
type CopyPair = [data: Copy, ready: boolean];
/** activationForward/Backward's kind: 0 gelu_new, 1 relu. */
type ActivationCode = 0 | 1;

/**
 * The addon's functions (native/binding.cc), arguments in the order it reads them. Tensors are the typed arrays
 * themselves; null where a tensor is optional.
 */
interface Addon {
  linearForward(x: F32, w: F32, b: F32, y: F32, rows: number, inF: number, outF: number, ...rest: [...xCopy: CopyPair, yCopy: Copy]): void;
  linearBackward(
    dy: F32, x: F32, w: F32, dx: F32 | null, dw: F32 | null, db: F32 | null, rows: number, inF: number, outF: number,
    overwriteGrads: boolean, ...rest: [...xCopy: CopyPair, geluInput: F32 | null, accumulateDx: boolean, dxCopy: Copy, dyCopy: Copy, geluInputCopy: Copy]
  ): void;
  add(a: F32, b: F32, out: F32, n: number): void;
  geluForward(x: F32, y: F32, n: number, yCopy: Copy, xCopy: Copy): void;
  geluBackward(x: F32, dy: F32, dx: F32, n: number): void;
  tanhForward(x: F32, y: F32, n: number): void;
  tanhBackward(y: F32, dy: F32, dx: F32, n: number): void;
  activationForward(kind: ActivationCode, x: F32, y: F32, n: number): void;
  activationBackward(kind: ActivationCode, x: F32, dy: F32, dx: F32, n: number): void;
  layerNormForward(x: F32, gamma: F32, beta: F32, y: F32, mean: F32, rstd: F32, rows: number, cols: number, eps: number): void;
  layerNormBackward(
    dy: F32, x: F32, mean: F32, rstd: F32, gamma: F32, dx: F32, dgamma: F32 | null, dbeta: F32 | null, rows: number, cols: number,
  ): void;
  attentionForward(
    q: F32, k: F32, v: F32, keyMask: F32, batch: number, seqLen: number, heads: number, headDim: number, probs: F32 | null,
    ctx: F32, dropoutP: number | null, seed: number, offset: number, keep: Uint8Array | null, queryLen: number,
    ...rest: [...q: CopyPair, ...k: CopyPair, ...v: CopyPair, ...p: CopyPair, ctxCopy: Copy, lengths: Int32Array | null, starts: Int32Array | null]
  ): void;
  attentionBackward(
    q: F32, k: F32, v: F32, probs: F32, keep: Uint8Array | null, dropoutP: number, dctx: F32, batch: number, seqLen: number,
    heads: number, headDim: number, dq: F32, dk: F32, dv: F32, queryLen: number,
    ...rest: [...q: CopyPair, ...k: CopyPair, ...v: CopyPair, ...p: CopyPair, ...dctx: CopyPair, lengths: Int32Array | null, starts: Int32Array | null]
  ): void;
  packedAttention(bf16: boolean, seqLen: number, queryLen: number, headDim: number): boolean;
  dropoutForward(x: F32, y: F32, keep: Uint8Array, n: number, p: number, seed: number, offset: number): void;
  dropoutAddLayerNorm(
    x: F32, residual: F32, gamma: F32, beta: F32, sum: F32, y: F32, mean: F32, rstd: F32, rows: number, cols: number, eps: number,
    dropoutP: number | null, seed: number, offset: number, keep: Uint8Array | null, yCopy: Copy,
  ): void;
  dropoutBackward(dy: F32, dx: F32, keep: Uint8Array, n: number, p: number): void;
  embeddingForward(ids: Int32Array, posIds: Int32Array, typeIds: Int32Array, word: F32, pos: F32, type: F32, out: F32, rows: number, hidden: number): void;
  embeddingBackward(ids: Int32Array, dOut: F32, table: F32, rows: number, hidden: number, skipId: number): void;
  crossEntropyForward(logits: F32, labels: Int32Array, probs: F32, rows: number, classes: number): number;
  crossEntropyBackward(probs: F32, labels: Int32Array, dlogits: F32, rows: number, classes: number, scale: number): void;
  adamw(
    p: F32, g: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number,
    step: number, gradScale: number,
  ): void;
  sumSquares(x: F32, n: number): number;
  scale(x: F32, n: number, s: number): void;
  /** Settings of this addon instance: bf16 GEMMs, and OpenMP threads (0: OpenMP's default). */
  configure(bf16: boolean, threads: number): void;
  info(): NativeInfo;
  /** Whether the advice was taken. */
  adviseHugePages(buffer: ArrayBuffer): boolean;
}

// WEITIAO_NATIVE_ADDON: another build of the addon (scripts/asan.sh loads an AddressSanitizer one).
const ADDON_PATH = process.env.WEITIAO_NATIVE_ADDON || fileURLToPath(new URL("../../../build/Release/weitiao.node", import.meta.url));
let addon: Addon | null = null;
let loadError = "";

function loadAddon(): Addon | null {
  if (addon || loadError) return addon;
  if (process.env.WEITIAO_BACKEND === "typescript") {
    loadError = "WEITIAO_BACKEND=typescript";
    return null;
  }
  if (!existsSync(ADDON_PATH)) {
    loadError = "the addon was not built at install";
    return null;
  }
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
  } catch (e) {
    loadError = (e as Error).message.split("\n")[0]!;
  }
  return addon;
}

/** A copy's buffer and whether it is filled, as the addon takes them; after the call the copy is filled. */
function copyArgs(c: Bf16Copy | null | undefined): CopyPair {
  return c ? [c.data, c.ready] : [null, false];
}
/** The buffer of a copy given as an input in place of its tensor: it must be filled. */
function readyCopy(c: Bf16Copy | null | undefined): Uint16Array | null {
  if (c && !c.ready) throw new Error("a bf16 copy passed in place of its tensor must be filled");
  return c?.data ?? null;
}
function markReady(...copies: (Bf16Copy | null | undefined)[]): void {
  for (const c of copies) if (c) c.ready = true;
}

function f32(x: FArray): Float32Array {
  if (!(x instanceof Float32Array)) throw new Error("the native backend computes in float32 only");
  return x;
}

export function nativeInfo(): NativeInfo | null {
  return loadAddon()?.info() ?? null;
}

/**
 * A packed batch's row count is rounded up to a multiple of this: the addon builds its GEMM kernels (oneDNN
 * primitives, cached per shape) per row count, and real token counts would make nearly every batch a new one.
 */
const ROW_COUNT_MULTIPLE = 32;

export function loadNativeBackend(opts: NativeLoadOptions): { backend: Backend | null; reason: string } {
  const a = loadAddon();
  if (!a) return { backend: null, reason: loadError };
  const bf16 = opts.precision === "bf16";
  if (bf16 && !a.info().bf16Supported) {
    return { backend: null, reason: "this CPU has no bf16 GEMMs in oneDNN (they need AVX-512); use --precision fp32" };
  }
  // Kernel settings are process-wide in the addon; every precision-dependent call (GEMMs, attention) re-applies
  // this backend's own, so fp32 and bf16 backends can be used side by side.
  const configure = (): void => void a.configure(bf16, opts.threads ?? 0);
  configure();
  const backend: Backend = {
    name: bf16 ? "native-bf16" : "native",
    supportsFloat64: false,
    usesBf16Copies: bf16,
    // fp32 attention takes packed rows at any length; the bf16 per-head kernels at multiples of their tile.
    packedLengthMultiple: bf16 ? a.info().attentionTile : 1,
    rowCountMultiple: ROW_COUNT_MULTIPLE,
    adviseHugePages: (buffer) => void a.adviseHugePages(buffer),
    linearForward(x, w, b, y, rows, inF, outF, xCopy, yCopy) {
      configure();
      a.linearForward(f32(x), f32(w), f32(b), f32(y), rows, inF, outF, ...copyArgs(xCopy), yCopy?.data ?? null);
      markReady(xCopy, yCopy);
    },
    linearBackward(dy, x, w, dx, dw, db, rows, inF, outF, opts = {}) {
      configure();
      a.linearBackward(f32(dy), f32(x), f32(w), dx && f32(dx), dw && f32(dw), db && f32(db), rows, inF, outF, opts.overwriteGrads === true,
        ...copyArgs(opts.xCopy), opts.geluInput ? f32(opts.geluInput) : null, opts.accumulateDx === true, opts.dxCopy?.data ?? null,
        readyCopy(opts.dyCopy), readyCopy(opts.geluInputCopy));
      markReady(opts.xCopy, opts.accumulateDx ? null : opts.dxCopy);
    },
    add: (x, y, out, n) => a.add(f32(x), f32(y), f32(out), n),
    geluForward(x, y, n, yCopy, xCopy) {
      a.geluForward(f32(x), f32(y), n, yCopy?.data ?? null, readyCopy(xCopy));
      markReady(yCopy);
    },
    geluBackward: (x, dy, dx, n) => a.geluBackward(f32(x), f32(dy), f32(dx), n),
    tanhForward: (x, y, n) => a.tanhForward(f32(x), f32(y), n),
    tanhBackward: (y, dy, dx, n) => a.tanhBackward(f32(y), f32(dy), f32(dx), n),
    activationForward: (kind, x, y, n) => a.activationForward(kind === "relu" ? 1 : 0, f32(x), f32(y), n),
    activationBackward: (kind, x, dy, dx, n) => a.activationBackward(kind === "relu" ? 1 : 0, f32(x), f32(dy), f32(dx), n),
    layerNormForward: (x, g, b, y, mean, rstd, rows, cols, eps) =>
      a.layerNormForward(f32(x), f32(g), f32(b), f32(y), f32(mean), f32(rstd), rows, cols, eps),
    layerNormBackward: (dy, x, mean, rstd, g, dx, dg, db, rows, cols) =>
      a.layerNormBackward(f32(dy), f32(x), f32(mean), f32(rstd), f32(g), f32(dx), dg && f32(dg), db && f32(db), rows, cols),
    attentionForward({ q, k, v, keyMask: mask, shape: s, probs, ctx, dropout, keep, copies }) {
      configure();
      a.attentionForward(f32(q), f32(k), f32(v), mask, s.batch, s.seqLen, s.heads, s.headDim, probs && f32(probs), f32(ctx),
        dropout ? dropout.p : null, dropout?.seed ?? 0, dropout?.offset ?? 0, keep, s.queryLen ?? s.seqLen,
        ...copyArgs(copies?.q), ...copyArgs(copies?.k), ...copyArgs(copies?.v), ...copyArgs(copies?.p), copies?.ctx?.data ?? null,
        s.lengths ?? null, s.starts ?? null);
      markReady(copies?.q, copies?.k, copies?.v, copies?.p, copies?.ctx);
    },
    attentionBackward({ q, k, v, probs, keep, dropoutP: p, dctx, shape: s, dq, dk, dv, copies }) {
      configure();
      a.attentionBackward(f32(q), f32(k), f32(v), f32(probs), keep, p, f32(dctx), s.batch, s.seqLen, s.heads, s.headDim,
        f32(dq), f32(dk), f32(dv), s.queryLen ?? s.seqLen,
        ...copyArgs(copies?.q), ...copyArgs(copies?.k), ...copyArgs(copies?.v), ...copyArgs(copies?.p), ...copyArgs(copies?.dctx),
        s.lengths ?? null, s.starts ?? null);
      markReady(copies?.q, copies?.k, copies?.v);
    },
    packedAttention: (s) => a.packedAttention(bf16, s.seqLen, s.queryLen ?? s.seqLen, s.headDim),
    dropoutForward: (x, y, keep, n, spec) => a.dropoutForward(f32(x), f32(y), keep, n, spec.p, spec.seed >>> 0, spec.offset >>> 0),
    dropoutAddLayerNorm({ x, residual, gamma: g, beta: b, sum, y, mean, rstd, rows, cols, eps, dropout, keep, yCopy }) {
      a.dropoutAddLayerNorm(f32(x), f32(residual), f32(g), f32(b), f32(sum), f32(y), f32(mean), f32(rstd), rows, cols, eps,
        dropout ? dropout.p : null, (dropout?.seed ?? 0) >>> 0, (dropout?.offset ?? 0) >>> 0, keep, yCopy?.data ?? null);
      markReady(yCopy);
    },
    dropoutBackward: (dy, dx, keep, n, p) => a.dropoutBackward(f32(dy), f32(dx), keep, n, p),
    embeddingForward: (ids, pos, type, word, pe, te, out, rows, h) =>
      a.embeddingForward(ids, pos, type, f32(word), f32(pe), f32(te), f32(out), rows, h),
    embeddingBackward: (ids, dOut, table, rows, h, skip) => a.embeddingBackward(ids, f32(dOut), f32(table), rows, h, skip),
    crossEntropyForward: (logits, labels, probs, rows, c) => a.crossEntropyForward(f32(logits), labels, f32(probs), rows, c),
    crossEntropyBackward: (probs, labels, d, rows, c, scale) => a.crossEntropyBackward(f32(probs), labels, f32(d), rows, c, scale),
    adamw: ({ p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale }) =>
      a.adamw(f32(p), f32(g), f32(m), f32(v), n, lr, beta1, beta2, eps, weightDecay, step, gradScale ?? 1),
    sumSquares: (x, n) => a.sumSquares(f32(x), n),
    scale: (x, n, s) => a.scale(f32(x), n, s),
  };
  return { backend, reason: "" };
}
