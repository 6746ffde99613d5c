/**
 * Attention's options, on every backend:
 * - AttentionShape.lengths: attention over a packed batch moved to the padded layout may skip each sequence's
 *   padding. The rows it computes equal the same backend's attention over the whole layout, and it leaves what lies
 *   beyond untouched (so a backend that ignored lengths would fail here).
 * - AttentionShape.starts (a packed batch's rows, no move to the padded layout): the same rows as the padded layout's,
 *   including where a sequence's rows rounded up to the bf16 kernels' tile run into the next sequence's rows or past
 *   the batch's last row.
 * - probs null (inference: nothing kept for backward): the same context as with the probabilities kept.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AttentionShape, Backend, Bf16Copy } from "../../src/backend/types.js";
import { Rng } from "../../src/util/rng.js";
import { EVERY_BACKEND } from "../backends.js";
import { relErr } from "../helpers.js";

/** The bf16 bit patterns of a (round to nearest even, as the native backend converts). */
const bf16Bits = (a: Float32Array): Uint16Array =>
  Uint16Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length), (u) => (u + 0x7fff + ((u >>> 16) & 1)) >>> 16);

const rng = new Rng(11);
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.normal());

// T and the head size multiples of 16: the native bf16 backend runs its per-head kernels, over rows rounded up to 16
const B = 4, T = 48, H = 2, D = 16, W = H * D;
const LENGTHS = Int32Array.from([48, 37, 5, 20]);
/** Rows a backend may compute for sequence b: its length, or up to the next multiple of 16 (native bf16). */
const maxComputed = (b: number): number => Math.min(T, Math.ceil(LENGTHS[b]! / 16) * 16);

interface Run {
  probs: Float32Array;
  keep: Uint8Array;
  ctx: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

for (const backend of EVERY_BACKEND) {
  test(`[${backend.name}] attention with per-sequence lengths equals attention over the padded layout on the rows it computes`, () => {
    const n = B * T * W, P = B * H * T * T;
    const q = rand(n), k = rand(n), v = rand(n), dctx = rand(n);
    const mask = new Float32Array(B * T);
    LENGTHS.forEach((len, b) => {
      mask.fill(-Infinity, b * T + len, b * T + T);
      dctx.fill(0, (b * T + len) * W, (b * T + T) * W); // nothing reads padding queries: no gradient comes back to them
    });
    mask[1 * T + 3] = -Infinity; // a masked key inside a sequence as well
    const drop = { p: 0.2, seed: 9, offset: 5 };
    const run = (be: Backend, shape: AttentionShape): Run => {
      const r: Run = { probs: new Float32Array(P).fill(NaN), keep: new Uint8Array(P).fill(7), ctx: new Float32Array(n), dq: new Float32Array(n), dk: new Float32Array(n), dv: new Float32Array(n) };
      be.attentionForward({ q, k, v, keyMask: mask, shape, probs: r.probs, ctx: r.ctx, dropout: drop, keep: r.keep });
      be.attentionBackward({ q, k, v, probs: r.probs, keep: r.keep, dropoutP: drop.p, dctx, shape, dq: r.dq, dk: r.dk, dv: r.dv });
      return r;
    };
    const shape = { batch: B, seqLen: T, heads: H, headDim: D };
    const full = run(backend, shape);
    const skipped = run(backend, { ...shape, lengths: LENGTHS });

    // probs index ((b·H + h)·T + i)·T + j; rows of ctx, dq, dk, dv are b·T + i
    const seq = (p: number): { b: number; i: number; j: number } => ({ b: Math.floor(p / (H * T * T)), i: Math.floor(p / T) % T, j: p % T });
    const realEntry = (p: number): boolean => {
      const { b, i, j } = seq(p);
      return i < LENGTHS[b]! && j < LENGTHS[b]!;
    };
    const realRow = (x: number): boolean => Math.floor(x / W) % T < LENGTHS[Math.floor(x / (T * W))]!;
    for (let p = 0; p < P; p++) {
      const { b, i, j } = seq(p);
      if (realEntry(p)) {
        assert.equal(skipped.keep[p], full.keep[p], `dropout mask at ${p}`);
      } else if (i >= maxComputed(b) || j >= maxComputed(b)) {
        assert.ok(Number.isNaN(skipped.probs[p]) && skipped.keep[p] === 7, `probs/keep beyond the computed rows untouched at ${p}`);
      }
    }
    // the same kernels on the same values: only the products' lengths differ
    const tol = 1e-6;
    assert.ok(relErr(skipped.probs, full.probs, realEntry) < tol, `probs rel ${relErr(skipped.probs, full.probs, realEntry)}`);
    for (const key of ["ctx", "dq", "dk", "dv"] as const) {
      const e = relErr(skipped[key], full[key], realRow);
      assert.ok(e < tol, `${key} rel ${e}`);
    }
  });
}

for (const backend of EVERY_BACKEND) {
  test(`[${backend.name}] attention over packed rows (starts) equals attention over the padded layout with lengths`, (t) => {
    const shape = { batch: B, seqLen: T, heads: H, headDim: D, lengths: LENGTHS };
    const starts = new Int32Array(B);
    for (let b = 1; b < B; b++) starts[b] = starts[b - 1]! + LENGTHS[b - 1]!;
    const packedShape = { ...shape, starts };
    if (!backend.packedAttention?.(packedShape)) {
      assert.equal(backend.name, "native-bf16", "the TS and native fp32 backends take packed rows at any shape");
      t.skip("built without the per-head AVX512-BF16 kernels");
      return;
    }
    const rows = starts[B - 1]! + LENGTHS[B - 1]!;
    assert.ok(starts[B - 1]! + 32 > rows && starts[1]! + 48 > starts[2]!, "rows rounded up to 16 run past the batch's end and into the next sequence");
    const n = B * T * W, P = B * H * T * T;
    const q = rand(n), k = rand(n), v = rand(n), dctx = rand(n);
    const mask = new Float32Array(B * T);
    LENGTHS.forEach((len, b) => {
      mask.fill(-Infinity, b * T + len, b * T + T);
      dctx.fill(0, (b * T + len) * W, (b * T + T) * W);
    });
    // the packed form of a padded [B·T, W] array, and back
    const pack = (x: Float32Array): Float32Array => {
      const out = new Float32Array(rows * W);
      LENGTHS.forEach((len, b) => out.set(x.subarray(b * T * W, (b * T + len) * W), starts[b]! * W));
      return out;
    };
    const drop = { p: 0.2, seed: 3, offset: 1 };
    const padded = { probs: new Float32Array(P), keep: new Uint8Array(P), ctx: new Float32Array(n), dq: new Float32Array(n), dk: new Float32Array(n), dv: new Float32Array(n) };
    backend.attentionForward({ q, k, v, keyMask: mask, shape, probs: padded.probs, ctx: padded.ctx, dropout: drop, keep: padded.keep });
    backend.attentionBackward({ q, k, v, probs: padded.probs, keep: padded.keep, dropoutP: drop.p, dctx, shape, dq: padded.dq, dk: padded.dk, dv: padded.dv });
    const [pq, pk, pv, pdctx] = [q, k, v, dctx].map(pack) as [Float32Array, Float32Array, Float32Array, Float32Array];
    const realEntry = (p: number): boolean => {
      const b = Math.floor(p / (H * T * T)), i = Math.floor(p / T) % T, j = p % T;
      return i < LENGTHS[b]! && j < LENGTHS[b]!;
    };
    // with bf16 copies as the model passes them (dctx's filled): rows past the batch's end are NaN in the copies'
    // buffers, which a kernel reading them would spread
    const copy = (): Bf16Copy => ({ data: new Uint16Array((rows + 16) * W).fill(0x7fc0).subarray(0, rows * W), ready: false });
    for (const copies of backend.usesBf16Copies ? [null, { q: copy(), k: copy(), v: copy(), dctx: { data: bf16Bits(pdctx), ready: true } }] : [null]) {
      const packed = { probs: new Float32Array(P), keep: new Uint8Array(P), ctx: new Float32Array(rows * W), dq: new Float32Array(rows * W), dk: new Float32Array(rows * W), dv: new Float32Array(rows * W) };
      backend.attentionForward({ q: pq, k: pk, v: pv, keyMask: mask, shape: packedShape, probs: packed.probs, ctx: packed.ctx, dropout: drop, keep: packed.keep, copies });
      backend.attentionBackward({ q: pq, k: pk, v: pv, probs: packed.probs, keep: packed.keep, dropoutP: drop.p, dctx: pdctx, shape: packedShape, dq: packed.dq, dk: packed.dk, dv: packed.dv, copies });
      const label = copies ? "with copies: " : "";
      for (let p = 0; p < P; p++) if (realEntry(p)) assert.equal(packed.keep[p], padded.keep[p], `${label}dropout mask at ${p}`);
      assert.ok(relErr(packed.probs, padded.probs, realEntry) < 1e-6, `${label}probs rel ${relErr(packed.probs, padded.probs, realEntry)}`);
      for (const key of ["ctx", "dq", "dk", "dv"] as const) {
        const e = relErr(packed[key], pack(padded[key]));
        assert.ok(e < 1e-6, `${label}${key} rel ${e}`);
      }
    }
  });
}

for (const backend of EVERY_BACKEND) {
  test(`[${backend.name}] attention keeping no probabilities (inference) gives the context it gives when keeping them`, () => {
    for (const shape of [{ batch: 3, seqLen: 32, heads: 2, headDim: 16 }, { batch: 2, seqLen: 12, heads: 2, headDim: 8 }, { batch: 2, seqLen: 32, heads: 2, headDim: 16, queryLen: 1 }]) {
      const { batch: b, seqLen: t, heads: h, headDim: d } = shape;
      const tq = shape.queryLen ?? t;
      const kn = b * t * h * d, qn = b * tq * h * d, p = b * h * tq * t;
      const q = rand(qn), k = rand(kn), v = rand(kn);
      const mask = Float32Array.from({ length: b * t }, (_, i) => (i % t >= t - 3 ? -Infinity : 0));
      for (const drop of [null, { p: 0.25, seed: 4, offset: 9 }]) {
        const kept = new Float32Array(qn), unkept = new Float32Array(qn);
        backend.attentionForward({ q, k, v, keyMask: mask, shape, probs: new Float32Array(p), ctx: kept, dropout: drop, keep: drop && new Uint8Array(p) });
        backend.attentionForward({ q, k, v, keyMask: mask, shape, probs: null, ctx: unkept, dropout: drop, keep: null });
        const e = relErr(unkept, kept);
        assert.ok(e < 1e-6, `T=${t} D=${d} Tq=${tq} dropout ${drop?.p ?? 0}: ctx rel ${e}`);
      }
    }
  });
}
