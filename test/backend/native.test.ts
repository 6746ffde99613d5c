/** The native backend kernel by kernel against the TypeScript reference on random inputs; bf16 within its bounds. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tsBackend as ref } from "../../src/backend/ts.js";
import type { AttentionShape, Backend, DropoutSpec } from "../../src/backend/types.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { Trainer, type StepLog } from "../../src/train/trainer.js";
import { Rng } from "../../src/util/rng.js";
import { loadNativeBackend } from "../../src/backend/native.js";
import { EVERY_BACKEND, NATIVE, NATIVE_BF16 } from "../backends.js";
import { HF, REAL, TINY, referenceData, relErr } from "../helpers.js";
import { STRATEGY_ARGS, trajectoryArgs, trajectoryTrainSet } from "../train/trajectory-check.js";

const rng = new Rng(3);
const rand = (n: number, s = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * s);
const skip = NATIVE ? false : "native addon not built";

function same(name: string, a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5): void {
  const e = relErr(a, b);
  assert.ok(e < tol, `${name}: rel ${e}`);
}

/** The bf16 bit patterns of a (round to nearest even, as the addon converts). */
function bf16Bits(a: Float32Array): Uint16Array {
  return Uint16Array.from(new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)), (u) => (u + 0x7fff + ((u >>> 16) & 1)) >>> 16);
}

/** a rounded to bf16, as float32. */
function toBf16(a: Float32Array): Float32Array {
  return new Float32Array(Uint32Array.from(bf16Bits(a), (h) => h << 16).buffer);
}

/** An empty bf16 copy of n elements (see Bf16Copy). */
function newCopy(n: number): { data: Uint16Array; ready: boolean } {
  return { data: new Uint16Array(n), ready: false };
}

/**
 * Attention forward and backward of `nb` against the reference on random inputs, with the last two keys of every
 * sequence masked: identical dropout masks; probabilities, context and gradients within `tol`; masked keys' probabilities
 * exactly 0.
 */
function compareAttention(nb: Backend, shape: AttentionShape, drop: DropoutSpec, tol: number, label: string): void {
  const { batch: B, seqLen: T, heads: H, headDim: D } = shape;
  const Tq = shape.queryLen ?? T;
  const qn = B * Tq * H * D, kn = B * T * H * D, P = B * H * Tq * T;
  const q = rand(qn), k = rand(kn), v = rand(kn), dctx = rand(qn);
  const mask = Float32Array.from({ length: B * T }, (_, i) => (i % T >= T - 2 ? -Infinity : 0));
  const run = (be: Backend) => {
    const probs = new Float32Array(P), ctx = new Float32Array(qn), keep = new Uint8Array(P);
    const dq = new Float32Array(qn), dk = new Float32Array(kn), dv = new Float32Array(kn);
    be.attentionForward({ q, k, v, keyMask: mask, shape, probs, ctx, dropout: drop, keep });
    be.attentionBackward({ q, k, v, probs, keep, dropoutP: drop.p, dctx, shape, dq, dk, dv });
    return { probs, ctx, keep, dq, dk, dv };
  };
  const r = run(ref), n = run(nb);
  assert.deepEqual(n.keep, r.keep, `${label}: identical dropout masks`);
  for (const key of ["probs", "ctx", "dq", "dk", "dv"] as const) same(`${label} ${key}`, n[key], r[key], tol);
  // probs index ((b·H + h)·Tq + row)·T + key: masked keys get exactly 0
  for (let i = 0; i < P; i++) if (mask[Math.floor(i / (H * Tq * T)) * T + (i % T)] === -Infinity) assert.equal(n.probs[i], 0, `${label}: masked key`);
}

test("native kernels equal the reference kernels", { skip }, async () => {
  const nb = NATIVE as Backend;
  const [R, I, O] = [37, 48, 29];
  const x = rand(R * I), w = rand(O * I), b = rand(O), dy = rand(R * O);
  const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
  ref.linearForward(x, w, b, y1, R, I, O); nb.linearForward(x, w, b, y2, R, I, O); same("linear", y2, y1);
  const g = (): [Float32Array, Float32Array, Float32Array] => [new Float32Array(R * I), rand(O * I), rand(O)];
  const [dx1, dw1, db1] = g(); const [dx2, dw2, db2] = [new Float32Array(R * I), Float32Array.from(dw1), Float32Array.from(db1)];
  ref.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O); nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O);
  same("linear dx", dx2, dx1); same("linear dW (accumulated)", dw2, dw1); same("linear db (accumulated)", db2, db1);

  const n = 70000; // above the parallel threshold
  const gx = rand(n, 3), gdy = rand(n), o1 = new Float32Array(n), o2 = new Float32Array(n);
  ref.geluForward(gx, o1, n); nb.geluForward(gx, o2, n); same("gelu", o2, o1, 1e-6);
  ref.geluBackward(gx, gdy, o1, n); nb.geluBackward(gx, gdy, o2, n); same("gelu backward", o2, o1, 1e-6);

  const [LR, LC] = [50, 64];
  const lx = rand(LR * LC, 2), lg = rand(LC), lb = rand(LC), ldy = rand(LR * LC);
  const m1 = new Float32Array(LR), r1 = new Float32Array(LR), m2 = new Float32Array(LR), r2 = new Float32Array(LR);
  const ly1 = new Float32Array(LR * LC), ly2 = new Float32Array(LR * LC);
  ref.layerNormForward(lx, lg, lb, ly1, m1, r1, LR, LC, 1e-12); nb.layerNormForward(lx, lg, lb, ly2, m2, r2, LR, LC, 1e-12);
  same("layernorm", ly2, ly1);
  const ldx1 = new Float32Array(LR * LC), ldx2 = new Float32Array(LR * LC), dg1 = rand(LC), dg2 = Float32Array.from(dg1), dbb1 = rand(LC), dbb2 = Float32Array.from(dbb1);
  ref.layerNormBackward(ldy, lx, m1, r1, lg, ldx1, dg1, dbb1, LR, LC); nb.layerNormBackward(ldy, lx, m2, r2, lg, ldx2, dg2, dbb2, LR, LC);
  same("layernorm dx", ldx2, ldx1); same("layernorm dgamma", dg2, dg1); same("layernorm dbeta", dbb2, dbb1);

  const shape = { batch: 3, seqLen: 9, heads: 2, headDim: 8 };
  const drop = { p: 0.2, seed: 1234, offset: 77 };
  compareAttention(nb, shape, drop, 1e-5, "attention");
  // [CLS]-only attention (queryLen 1): q/ctx [B, W], probs [B, H, 1, T]
  compareAttention(nb, { ...shape, queryLen: 1 }, drop, 1e-5, "cls attention");

  // overwriteGrads: stale gradient buffers are overwritten, not added to
  const [zw, zb] = [rand(O * I), rand(O)];
  nb.linearBackward(dy, x, w, null, zw, zb, R, I, O, { overwriteGrads: true });
  const [rw, rb] = [rand(O * I), rand(O)];
  ref.linearBackward(dy, x, w, null, rw, rb, R, I, O, { overwriteGrads: true });
  const [cw, cb] = [new Float32Array(O * I), new Float32Array(O)];
  ref.linearBackward(dy, x, w, null, cw, cb, R, I, O);
  same("linear dW (overwrite)", zw, cw); same("linear db (overwrite)", zb, cb);
  same("reference dW (overwrite)", rw, cw, 1e-7); same("reference db (overwrite)", rb, cb, 1e-7);

  const dk1 = new Uint8Array(n), dk2 = new Uint8Array(n);
  ref.dropoutForward(gx, o1, dk1, n, { p: 0.1, seed: 9, offset: 5 }); nb.dropoutForward(gx, o2, dk2, n, { p: 0.1, seed: 9, offset: 5 });
  assert.deepEqual(dk2, dk1, "identical dropout masks"); same("dropout", o2, o1, 1e-7);

  // fused dropout + residual + LayerNorm, with and without dropout, against the reference's three kernels
  const lres = rand(LR * LC);
  for (const spec of [{ p: 0.1, seed: 9, offset: 5 }, null]) {
    const run = (be: Backend) => {
      const o = { sum: new Float32Array(LR * LC), y: new Float32Array(LR * LC), mean: new Float32Array(LR), rstd: new Float32Array(LR), keep: new Uint8Array(LR * LC) };
      be.dropoutAddLayerNorm({ x: lx, residual: lres, gamma: lg, beta: lb, sum: o.sum, y: o.y, mean: o.mean, rstd: o.rstd, rows: LR, cols: LC, eps: 1e-12, dropout: spec, keep: spec ? o.keep : null });
      return o;
    };
    const fr = run(ref), fn = run(nb);
    assert.deepEqual(fn.keep, fr.keep, "fused: identical dropout masks");
    if (spec) assert.ok(fr.keep.some((t) => t === 0) && fr.keep.some((t) => t === 1));
    for (const key of ["sum", "y", "mean", "rstd"] as const) same(`fused dropout+add+layernorm ${key} (dropout ${spec !== null})`, fn[key], fr[key], 1e-6);
  }

  const p = rand(n), gg = rand(n), mm = rand(n, 0.1), vv = Float32Array.from(rand(n), (t) => t * t);
  const [pa, ma, va] = [Float32Array.from(p), Float32Array.from(mm), Float32Array.from(vv)];
  const hyper = { n, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 };
  ref.adamw({ p, g: gg, m: mm, v: vv, ...hyper }); nb.adamw({ p: pa, g: gg, m: ma, v: va, ...hyper });
  same("adamw params", pa, p, 1e-7); same("adamw m", ma, mm, 1e-7); same("adamw v", va, vv, 1e-7);
  assert.ok(Math.abs(nb.sumSquares(gg, n) - ref.sumSquares(gg, n)) / ref.sumSquares(gg, n) < 1e-12);
});

const bf16Skip = NATIVE_BF16 ? false : `native bf16 unavailable: ${loadNativeBackend({ precision: "bf16" }).reason}`;

test("bf16: logits within 2e-2 relative of the fp32 reference", { skip: bf16Skip }, async () => {
  for (const dir of [REAL, HF]) {
    const { input, logits } = referenceData(dir);
    const { model } = loadModelFromDir(TINY, { backend: NATIVE_BF16! });
    const e = relErr(model.forward(input, { train: false }).logits, logits);
    assert.ok(e < 2e-2, `logits rel ${e}`);
    assert.ok(e > 1e-6, "bf16 GEMMs really ran (not fp32)");
  }
});

for (const refName of Object.keys(STRATEGY_ARGS)) {
  test(`bf16: 12-step ${refName} trajectory, every step's loss within 2e-2 of the reference`, { skip: bf16Skip }, async () => {
    const refRun = JSON.parse(readFileSync(join(REAL, "manifest.json"), "utf8")).trajectory.results[refName];
    const { model } = loadModelFromDir(TINY, { backend: NATIVE_BF16! });
    model.setDropout(0);
    const trainer = new Trainer(model, trajectoryArgs(REAL, refName), trajectoryTrainSet(REAL), null, 0);
    const logs = (await trainer.train()).logHistory as StepLog[];
    assert.equal(logs.length, 12);
    logs.forEach((l, s) => assert.ok(Math.abs(l.loss - refRun.loss[s]) < 2e-2, `step ${s + 1}: ${l.loss} vs ${refRun.loss[s]}`));
  });
}

test("bf16 linear layer (packed weights, fused bias, inner-product weight gradient) within bf16 bounds, accumulating or overwriting", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  const [R, I, O] = [64, 96, 80];
  const x = rand(R * I), w = rand(O * I, 0.1), b = rand(O), dy = rand(R * O);
  const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
  ref.linearForward(x, w, b, y1, R, I, O); nb.linearForward(x, w, b, y2, R, I, O);
  same("bf16 linear", y2, y1, 2e-2);
  assert.ok(relErr(y2, y1) > 1e-6, "bf16 really ran");
  for (const overwrite of [false, true]) {
    // accumulate onto an existing gradient, or overwrite a stale one
    const dw1 = new Float32Array(O * I).fill(1), db1 = new Float32Array(O).fill(1);
    const dw2 = Float32Array.from(dw1), db2 = Float32Array.from(db1);
    const dx1 = new Float32Array(R * I), dx2 = new Float32Array(R * I);
    ref.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O, { overwriteGrads: overwrite });
    nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O, { overwriteGrads: overwrite });
    same(`bf16 dx (overwrite ${overwrite})`, dx2, dx1, 2e-2);
    same(`bf16 dW (overwrite ${overwrite})`, dw2, dw1, 2e-2);
    same(`bf16 db (overwrite ${overwrite})`, db2, db1, 1e-6); // the bias gradient is summed from fp32 dy
  }
});

test("bf16 linear at block-aligned sizes (weights packed by the addon's own packer) equals the bf16-rounded product", { skip: bf16Skip }, () => {
  // in and out multiples of 64: both weight layouts (forward Wᵀ, backward W) go through packWeight*/, not oneDNN's
  // reorder. A misplaced element would be an O(1) error; bf16 rounding of the inputs is emulated exactly, so only
  // fp32 accumulation order separates the two.
  const nb = NATIVE_BF16!;
  const [R, I, O] = [48, 128, 192];
  const x = rand(R * I), w = rand(O * I, 0.1), b = rand(O), dy = rand(R * O);
  const [x16, w16, dy16] = [toBf16(x), toBf16(w), toBf16(dy)];
  const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
  ref.linearForward(x16, w16, b, y1, R, I, O);
  nb.linearForward(x, w, b, y2, R, I, O);
  same("forward (Wᵀ packed)", y2, y1, 1e-5);
  const dx1 = new Float32Array(R * I), dx2 = new Float32Array(R * I);
  ref.linearBackward(dy16, x16, w16, dx1, null, null, R, I, O);
  nb.linearBackward(dy, x, w, dx2, null, null, R, I, O);
  same("dx (W packed)", dx2, dx1, 1e-5);
});

test("bf16 linear with a reduction size of 16 mod 32 (oneDNN pads its weight blocks) equals the bf16-rounded product", { skip: bf16Skip }, () => {
  // forward reads Wᵀ [in, out] and backward W [out, in]: in = 80 and out = 80 each give the packed operand a K that
  // oneDNN pads from 80 to 96 rows, which the addon's packers do not write (its reorder does)
  const nb = NATIVE_BF16!;
  for (const [R, I, O] of [[16, 80, 128], [16, 128, 80]] as const) {
    const x = rand(R * I), w = rand(O * I, 0.1), b = rand(O), dy = rand(R * O);
    const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
    ref.linearForward(toBf16(x), toBf16(w), b, y1, R, I, O);
    nb.linearForward(x, w, b, y2, R, I, O);
    same(`forward ${I}→${O}`, y2, y1, 1e-5);
    const dx1 = new Float32Array(R * I), dx2 = new Float32Array(R * I);
    ref.linearBackward(toBf16(dy), toBf16(x), toBf16(w), dx1, null, null, R, I, O);
    nb.linearBackward(dy, x, w, dx2, null, null, R, I, O);
    same(`dx ${I}→${O}`, dx2, dx1, 1e-5);
  }
});

test("linear backward through GELU (geluInput) equals geluBackward then linear backward, bit for bit on every backend", () => {
  const [R, I, O] = [40, 64, 96];
  const x = rand(R * I), w = rand(O * I, 0.1), pre = rand(R * O, 2), dAct = rand(R * O);
  for (const be of EVERY_BACKEND) {
    const run = (fused: boolean) => {
      const dx = new Float32Array(R * I), dw = new Float32Array(O * I).fill(0.5), db = new Float32Array(O).fill(0.5);
      if (fused) {
        be.linearBackward(dAct, x, w, dx, dw, db, R, I, O, { geluInput: pre });
      } else {
        const dPre = new Float32Array(R * O);
        be.geluBackward(pre, dAct, dPre, R * O);
        be.linearBackward(dPre, x, w, dx, dw, db, R, I, O);
      }
      return { dx, dw, db };
    };
    const a = run(true), b = run(false);
    assert.deepEqual(a, b, be.name);
    assert.ok(a.db.some((t) => t !== 0.5), `${be.name}: gradients were accumulated`);
  }
});

test("linear backward with accumulateDx adds dy·W into dx, on every backend (block-aligned sizes for the bf16 packer)", () => {
  const [R, I, O] = [32, 64, 128];
  const x = rand(R * I), w = rand(O * I, 0.1), dy = rand(R * O), dx0 = rand(R * I);
  for (const be of EVERY_BACKEND) {
    const fresh = new Float32Array(R * I), summed = Float32Array.from(dx0);
    be.linearBackward(dy, x, w, fresh, null, null, R, I, O);
    be.linearBackward(dy, x, w, summed, null, null, R, I, O, { accumulateDx: true });
    same(`${be.name}: dx0 + dy·W`, summed, Float32Array.from(fresh, (t, i) => t + dx0[i]!), 1e-6);
  }
});

test("bf16 copies: a GEMM input converted once and reused gives bit-identical results to converting at every use", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  assert.equal(nb.usesBf16Copies, true);
  const [R, I, O] = [48, 64, 40];
  const x = rand(R * I), w = rand(O * I, 0.1), b = rand(O), dy = rand(R * O);
  const copy = newCopy(R * I);
  const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
  nb.linearForward(x, w, b, y1, R, I, O, copy);
  assert.equal(copy.ready, true, "the first use fills the copy");
  assert.ok(copy.data.some((h) => h !== 0));
  nb.linearForward(x, w, b, y2, R, I, O, null);
  assert.deepEqual(y1, y2);
  const grads = () => [new Float32Array(R * I), new Float32Array(O * I), new Float32Array(O)] as const;
  const [dx1, dw1, db1] = grads(); const [dx2, dw2, db2] = grads();
  nb.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O, { xCopy: copy });
  nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O);
  assert.deepEqual(dw1, dw2); assert.deepEqual(dx1, dx2); assert.deepEqual(db1, db2);
  // a filled copy is trusted, not re-converted: stale contents show up in dW
  copy.data.fill(0);
  const dw3 = new Float32Array(O * I);
  nb.linearBackward(dy, x, w, null, dw3, null, R, I, O, { overwriteGrads: true, xCopy: copy });
  assert.ok(dw3.every((t) => t === 0));

  const shape = { batch: 2, seqLen: 8, heads: 2, headDim: 16 };
  const an = 2 * 8 * 32, P = 2 * 2 * 64;
  const q = rand(an), k = rand(an), v = rand(an), dctx = rand(an), mask = new Float32Array(16);
  const out = () => ({ probs: new Float32Array(P), ctx: new Float32Array(an), dq: new Float32Array(an), dk: new Float32Array(an), dv: new Float32Array(an), keep: new Uint8Array(P) });
  const newCopies = () => ({ q: newCopy(an), k: newCopy(an), v: newCopy(an), p: newCopy(P) });
  for (const drop of [null, { p: 0.2, seed: 5, offset: 9 }]) {
    // with copies of q, k, v and of the dropped probabilities P' (kept by forward, read by backward), and without
    const copies = newCopies();
    const a1 = out(), a2 = out();
    nb.attentionForward({ q, k, v, keyMask: mask, shape, probs: a1.probs, ctx: a1.ctx, dropout: drop, keep: drop && a1.keep, copies });
    assert.ok(copies.q.ready && copies.k.ready && copies.v.ready && copies.p.ready);
    nb.attentionForward({ q, k, v, keyMask: mask, shape, probs: a2.probs, ctx: a2.ctx, dropout: drop, keep: drop && a2.keep, copies: null });
    assert.deepEqual(a1.ctx, a2.ctx);
    // attention writing only ctx's copy: ctx in bf16
    const ctxCopy = newCopy(an), ctxOnly = new Float32Array(an).fill(7);
    nb.attentionForward({ q, k, v, keyMask: mask, shape, probs: new Float32Array(P), ctx: ctxOnly, dropout: drop, keep: drop && new Uint8Array(P), copies: { ...newCopies(), ctx: ctxCopy } });
    assert.ok(ctxCopy.ready && ctxOnly.every((t) => t === 7));
    assert.deepEqual(ctxCopy.data, bf16Bits(a2.ctx));
    nb.attentionBackward({ q, k, v, probs: a1.probs, keep: drop && a1.keep, dropoutP: drop?.p ?? 0, dctx, shape, dq: a1.dq, dk: a1.dk, dv: a1.dv, copies });
    nb.attentionBackward({ q, k, v, probs: a2.probs, keep: drop && a2.keep, dropoutP: drop?.p ?? 0, dctx, shape, dq: a2.dq, dk: a2.dk, dv: a2.dv, copies: null });
    assert.deepEqual(a1.dq, a2.dq); assert.deepEqual(a1.dk, a2.dk); assert.deepEqual(a1.dv, a2.dv);
    // backward really reads the kept P': stale contents change dV
    copies.p.data.fill(0);
    nb.attentionBackward({ q, k, v, probs: a1.probs, keep: drop && a1.keep, dropoutP: drop?.p ?? 0, dctx, shape, dq: a1.dq, dk: a1.dk, dv: a1.dv, copies });
    assert.ok(a1.dv.every((t) => t === 0), "dV from a zeroed P' copy");
  }

  // fused dropout+add+LayerNorm filling y's copy: the copy holds y in bf16
  const ly = new Float32Array(R * I), lyCopy = newCopy(R * I);
  const lyConverted = newCopy(R * I);
  nb.dropoutAddLayerNorm({ x, residual: rand(R * I), gamma: rand(I), beta: rand(I), sum: new Float32Array(R * I), y: ly, mean: new Float32Array(R), rstd: new Float32Array(R), rows: R, cols: I, eps: 1e-12, dropout: { p: 0.1, seed: 3, offset: 0 }, keep: new Uint8Array(R * I), yCopy: lyCopy });
  assert.equal(lyCopy.ready, true);
  const yA = new Float32Array(R * O), yB = new Float32Array(R * O);
  nb.linearForward(ly, w, b, yA, R, I, O, lyCopy);
  nb.linearForward(ly, w, b, yB, R, I, O, lyConverted);
  assert.deepEqual(lyCopy.data, lyConverted.data); assert.deepEqual(yA, yB);

  // a linear layer writing only its output's copy: y in bf16, y itself untouched
  const yOnly = new Float32Array(R * O).fill(7), yCopy = newCopy(R * O);
  nb.linearForward(x, w, b, yOnly, R, I, O, null, yCopy);
  assert.equal(yCopy.ready, true);
  assert.ok(yOnly.every((t) => t === 7), "with yCopy, y is not written");
  assert.deepEqual(yCopy.data, bf16Bits(y2));

  // GELU writing only its output's copy: the same bf16 values, hence the same next GEMM, as converting its fp32 output
  const inter = rand(R * I, 2), act = new Float32Array(R * I), untouched = new Float32Array(R * I).fill(7);
  const actCopy = newCopy(R * I);
  nb.geluForward(inter, act, R * I, null);
  nb.geluForward(inter, untouched, R * I, actCopy);
  assert.equal(actCopy.ready, true);
  assert.ok(untouched.every((t) => t === 7), "with a copy, the fp32 output is not written");
  const yFromCopy = new Float32Array(R * O), yFromFp32 = new Float32Array(R * O);
  nb.linearForward(untouched, w, b, yFromCopy, R, I, O, actCopy);
  nb.linearForward(act, w, b, yFromFp32, R, I, O, null);
  assert.deepEqual(yFromCopy, yFromFp32);
});

test("bf16 copies in backward: dx stored only as its bf16 copy, and attention backward reading dctx's copy, give bit-identical results", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  const [R, I, O] = [64, 64, 96];
  const x = rand(R * I), w = rand(O * I, 0.1), dy = rand(R * O);
  const grads = () => [new Float32Array(R * I), new Float32Array(O * I), new Float32Array(O)] as const;
  const [dx1, dw1, db1] = grads(); const [dx2, dw2, db2] = grads();
  dx1.fill(7);
  const dxCopy = newCopy(R * I);
  nb.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O, { dxCopy });
  nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O);
  assert.equal(dxCopy.ready, true);
  assert.ok(dx1.every((t) => t === 7), "with dxCopy, dx is not written");
  assert.deepEqual(dxCopy.data, bf16Bits(dx2));
  assert.deepEqual(dw1, dw2); assert.deepEqual(db1, db2);

  // the batched path (T = 8) and the per-head kernels (T, head size multiples of 16)
  for (const shape of [{ batch: 2, seqLen: 8, heads: 2, headDim: 16 }, { batch: 2, seqLen: 16, heads: 2, headDim: 16 }]) {
    const an = shape.batch * shape.seqLen * shape.heads * shape.headDim, P = shape.batch * shape.heads * shape.seqLen ** 2;
    const q = rand(an), k = rand(an), v = rand(an), dctx = rand(an), mask = new Float32Array(shape.batch * shape.seqLen);
    const drop = { p: 0.2, seed: 5, offset: 9 };
    const probs = new Float32Array(P), keep = new Uint8Array(P);
    nb.attentionForward({ q, k, v, keyMask: mask, shape, probs, ctx: new Float32Array(an), dropout: drop, keep });
    const grads3 = () => [new Float32Array(an), new Float32Array(an), new Float32Array(an)] as const;
    const [dq1, dk1, dv1] = grads3(); const [dq2, dk2, dv2] = grads3();
    const dctxCopy = { data: bf16Bits(dctx), ready: true };
    const stale = new Float32Array(an).fill(7); // dctx itself is not read when its copy is ready
    nb.attentionBackward({ q, k, v, probs, keep, dropoutP: drop.p, dctx: stale, shape, dq: dq1, dk: dk1, dv: dv1, copies: { q: newCopy(an), k: newCopy(an), v: newCopy(an), dctx: dctxCopy } });
    nb.attentionBackward({ q, k, v, probs, keep, dropoutP: drop.p, dctx, shape, dq: dq2, dk: dk2, dv: dv2, copies: null });
    const label = `T=${shape.seqLen}`;
    assert.deepEqual(dq1, dq2, label); assert.deepEqual(dk1, dk2, label); assert.deepEqual(dv1, dv2, label);
  }
});

test("bf16 copies as inputs: GELU and linear backward reading bf16 copies (inter, dAct as under autocast) equal the same values given in fp32, bit for bit", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  const [R, I, O] = [64, 64, 128];
  const inter = rand(R * O, 2), x = rand(R * I), w = rand(O * I, 0.1), dAct = rand(R * O);
  const interCopy = { data: bf16Bits(inter), ready: true }, dActCopy = { data: bf16Bits(dAct), ready: true };
  // GELU forward from inter's copy = from inter rounded to bf16, into y or into y's copy
  const fromFp32 = new Float32Array(R * O), fromCopy = new Float32Array(R * O).fill(7);
  nb.geluForward(toBf16(inter), fromFp32, R * O);
  nb.geluForward(inter.map(() => 7), fromCopy, R * O, null, interCopy);
  assert.deepEqual(fromCopy, fromFp32);
  const yCopy = newCopy(R * O);
  nb.geluForward(inter.map(() => 7), new Float32Array(R * O), R * O, yCopy, interCopy);
  assert.deepEqual(yCopy.data, bf16Bits(fromFp32));
  // linear backward with dy (and GELU's input) given only as bf16 copies = with the bf16-rounded fp32 values
  const stale = new Float32Array(R * O).fill(7); // the fp32 tensors are not read when their copies are given
  for (const gelu of [true, false]) {
    const run = (copies: boolean) => {
      const g = { dx: new Float32Array(R * I), dw: new Float32Array(O * I), db: new Float32Array(O) };
      if (copies) nb.linearBackward(stale, x, w, g.dx, g.dw, g.db, R, I, O, { overwriteGrads: true, dyCopy: dActCopy, ...(gelu ? { geluInput: stale, geluInputCopy: interCopy } : {}) });
      else nb.linearBackward(toBf16(dAct), x, w, g.dx, g.dw, g.db, R, I, O, { overwriteGrads: true, geluInput: gelu ? toBf16(inter) : null });
      return g;
    };
    assert.deepEqual(run(true), run(false), `gelu=${gelu}`);
  }
  // both bf16 or both fp32; a copy in place of its tensor must be filled
  const g3 = () => [new Float32Array(R * I), new Float32Array(O * I), new Float32Array(O)] as const;
  assert.throws(() => nb.linearBackward(stale, x, w, ...g3(), R, I, O, { dyCopy: dActCopy, geluInput: inter }), /both be fp32 or both bf16/);
  assert.throws(() => nb.linearBackward(dAct, x, w, ...g3(), R, I, O, { geluInput: inter, geluInputCopy: interCopy }), /both be fp32 or both bf16/);
  assert.throws(() => nb.linearBackward(dAct, x, w, ...g3(), R, I, O, { dyCopy: newCopy(R * O) }), /must be filled/);
});

test("bf16 attention (batched oneDNN path) stays within bf16 bounds of the reference, with identical dropout masks", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  const shape = { batch: 2, seqLen: 12, heads: 2, headDim: 16 };
  const drop = { p: 0.1, seed: 77, offset: 3 };
  compareAttention(nb, shape, drop, 2e-2, "bf16");
  compareAttention(nb, { ...shape, queryLen: 1 }, drop, 2e-2, "bf16 cls"); // [CLS]-only: q/ctx [B, W], probs [B, H, 1, T]
});

test("bf16 attention with T and head size multiples of 16 (per-head AVX512-BF16 backward) stays within bf16 bounds of the reference", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  for (const shape of [{ batch: 2, seqLen: 32, heads: 3, headDim: 16 }, { batch: 1, seqLen: 48, heads: 2, headDim: 80 }]) {
    for (const drop of [{ p: 0.1, seed: 5, offset: 11 }, { p: 0, seed: 0, offset: 0 }]) {
      compareAttention(nb, shape, drop, 2e-2, `T=${shape.seqLen} D=${shape.headDim} p=${drop.p}`);
    }
  }
});

// Transparent huge pages on request: only where the kernel offers them ("always" or "madvise"; not "never").
const thpMode = (() => {
  try {
    return /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"))?.[1] ?? "none";
  } catch {
    return "none";
  }
})();
const anonHugeKb = (): number => Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync("/proc/self/smaps_rollup", "utf8"))?.[1] ?? 0);

test("adviseHugePages backs an untouched buffer with huge pages", { skip: skip || (thpMode === "madvise" ? false : `THP mode ${thpMode}`) }, () => {
  const buffer = new ArrayBuffer(64 << 20);
  const before = anonHugeKb();
  NATIVE!.adviseHugePages!(buffer);
  new Float32Array(buffer).fill(1);
  assert.ok(anonHugeKb() - before >= 32 << 10, `AnonHugePages grew by ${anonHugeKb() - before} kB`);
});
