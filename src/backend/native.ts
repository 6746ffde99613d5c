/**
 * The native backend: the C++ addon (native/weitiao.cc, built by node-gyp at install) behind the Backend
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

type Addon = Record<string, (...args: any[]) => any>;

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
function copyArgs(c: Bf16Copy | null | undefined): [Uint16Array | null, boolean] {
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

export function nativeInfo(): { onednn: string; threads: number; bf16: boolean; bf16Supported: boolean } | null {
  return loadAddon()?.info() ?? null;
}

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
    attentionForward(q, k, v, mask, s, probs, ctx, dropout, keep, copies) {
      configure();
      a.attentionForward(f32(q), f32(k), f32(v), mask, s.batch, s.seqLen, s.heads, s.headDim, probs && f32(probs), f32(ctx),
        dropout ? dropout.p : null, dropout?.seed ?? 0, dropout?.offset ?? 0, keep, s.queryLen ?? s.seqLen,
        ...copyArgs(copies?.q), ...copyArgs(copies?.k), ...copyArgs(copies?.v), ...copyArgs(copies?.p), copies?.ctx?.data ?? null,
        s.lengths ?? null, s.starts ?? null);
      markReady(copies?.q, copies?.k, copies?.v, copies?.p, copies?.ctx);
    },
    attentionBackward(q, k, v, probs, keep, p, dctx, s, dq, dk, dv, copies) {
      configure();
      a.attentionBackward(f32(q), f32(k), f32(v), f32(probs), keep, p, f32(dctx), s.batch, s.seqLen, s.heads, s.headDim,
        f32(dq), f32(dk), f32(dv), s.queryLen ?? s.seqLen,
        ...copyArgs(copies?.q), ...copyArgs(copies?.k), ...copyArgs(copies?.v), ...copyArgs(copies?.p), ...copyArgs(copies?.dctx),
        s.lengths ?? null, s.starts ?? null);
      markReady(copies?.q, copies?.k, copies?.v);
    },
    packedAttention: (s) => a.packedAttention(bf16, s.seqLen, s.queryLen ?? s.seqLen, s.headDim),
    dropoutForward: (x, y, keep, n, spec) => a.dropoutForward(f32(x), f32(y), keep, n, spec.p, spec.seed >>> 0, spec.offset >>> 0),
    dropoutAddLayerNorm(x, residual, g, b, sum, y, mean, rstd, rows, cols, eps, dropout, keep, yCopy) {
      a.dropoutAddLayerNorm(f32(x), f32(residual), f32(g), f32(b), f32(sum), f32(y), f32(mean), f32(rstd), rows, cols, eps,
        dropout ? dropout.p : null, (dropout?.seed ?? 0) >>> 0, (dropout?.offset ?? 0) >>> 0, keep, yCopy?.data ?? null);
      markReady(yCopy);
    },
    dropoutBackward: (dy, dx, keep, n, p) => a.dropoutBackward(f32(dy), f32(dx), keep, n, p),
    embeddingForward: (ids, pos, type, word, pe, te, out, rows, h) =>
      a.embeddingForward(ids, pos, type, f32(word), f32(pe), f32(te), f32(out), rows, h),
    embeddingBackward: (ids, dOut, table, rows, h, skip) => a.embeddingBackward(ids, f32(dOut), f32(table), rows, h, skip),
    crossEntropyForward: (logits, labels, probs, rows, c) => a.crossEntropyForward(f32(logits), labels, f32(probs), rows, c) as number,
    crossEntropyBackward: (probs, labels, d, rows, c, scale) => a.crossEntropyBackward(f32(probs), labels, f32(d), rows, c, scale),
    adamw: (p, g, m, v, n, lr, b1, b2, eps, wd, step, gradScale) =>
      a.adamw(f32(p), f32(g), f32(m), f32(v), n, lr, b1, b2, eps, wd, step, gradScale ?? 1),
    sumSquares: (x, n) => a.sumSquares(f32(x), n) as number,
    scale: (x, n, s) => a.scale(f32(x), n, s),
  };
  return { backend, reason: "" };
}
