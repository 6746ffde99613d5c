/** The native backend kernel by kernel against the TypeScript reference on random inputs; bf16 within its bounds. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { tsBackend as ref } from "../../src/backend/ts.js";
import type { Backend } from "../../src/backend/types.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { Trainer, type StepLog } from "../../src/train/trainer.js";
import { Rng } from "../../src/util/rng.js";
import { NATIVE, NATIVE_BF16 } from "../backends.js";
import { HF, REAL, TINY, referenceData, relErr } from "../helpers.js";
import { STRATEGY_ARGS, trajectoryArgs, trajectoryTrainSet } from "../train/trajectory-check.js";

const rng = new Rng(3);
const rand = (n: number, s = 1): Float32Array => Float32Array.from({ length: n }, () => rng.normal() * s);
const skip = NATIVE ? false : "native addon not built";

function same(name: string, a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5): void {
  const e = relErr(a, b);
  assert.ok(e < tol, `${name}: rel ${e}`);
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
  const an = 3 * 9 * 16, P = 3 * 2 * 81;
  const q = rand(an), k = rand(an), v = rand(an), dctx = rand(an);
  const mask = Float32Array.from({ length: 27 }, (_, i) => (i % 9 > 6 ? -Infinity : 0));
  const drop = { p: 0.2, seed: 1234, offset: 77 };
  const p1 = new Float32Array(P), p2 = new Float32Array(P), c1 = new Float32Array(an), c2 = new Float32Array(an);
  const k1 = new Uint8Array(P), k2 = new Uint8Array(P);
  ref.attentionForward(q, k, v, mask, shape, p1, c1, drop, k1); nb.attentionForward(q, k, v, mask, shape, p2, c2, drop, k2);
  assert.deepEqual(k2, k1, "identical dropout masks"); same("attention probs", p2, p1); same("attention ctx", c2, c1);
  const grads = () => [new Float32Array(an), new Float32Array(an), new Float32Array(an)] as const;
  const [q1, kk1, v1] = grads(); const [q2, kk2, v2] = grads();
  ref.attentionBackward(q, k, v, p1, k1, 0.2, dctx, shape, q1, kk1, v1); nb.attentionBackward(q, k, v, p2, k2, 0.2, dctx, shape, q2, kk2, v2);
  same("attention dq", q2, q1); same("attention dk", kk2, kk1); same("attention dv", v2, v1);

  // [CLS]-only attention (queryLen 1): q/ctx [B, W], probs [B, H, 1, T]
  const cls = { ...shape, queryLen: 1 };
  const cn = 3 * 16, cP = 3 * 2 * 9;
  const cq = rand(cn), cdctx = rand(cn);
  const cp1 = new Float32Array(cP), cp2 = new Float32Array(cP), cc1 = new Float32Array(cn), cc2 = new Float32Array(cn);
  const ck1 = new Uint8Array(cP), ck2 = new Uint8Array(cP);
  ref.attentionForward(cq, k, v, mask, cls, cp1, cc1, drop, ck1); nb.attentionForward(cq, k, v, mask, cls, cp2, cc2, drop, ck2);
  assert.deepEqual(ck2, ck1); same("cls attention probs", cp2, cp1); same("cls attention ctx", cc2, cc1);
  const [cq1, ckk1, cv1] = [new Float32Array(cn), new Float32Array(an), new Float32Array(an)];
  const [cq2, ckk2, cv2] = [new Float32Array(cn), new Float32Array(an), new Float32Array(an)];
  ref.attentionBackward(cq, k, v, cp1, ck1, 0.2, cdctx, cls, cq1, ckk1, cv1); nb.attentionBackward(cq, k, v, cp2, ck2, 0.2, cdctx, cls, cq2, ckk2, cv2);
  same("cls attention dq", cq2, cq1); same("cls attention dk", ckk2, ckk1); same("cls attention dv", cv2, cv1);

  // overwriteGrads: stale gradient buffers are overwritten, not added to
  const [zw, zb] = [rand(O * I), rand(O)];
  nb.linearBackward(dy, x, w, null, zw, zb, R, I, O, true);
  const [rw, rb] = [rand(O * I), rand(O)];
  ref.linearBackward(dy, x, w, null, rw, rb, R, I, O, true);
  const [cw, cb] = [new Float32Array(O * I), new Float32Array(O)];
  ref.linearBackward(dy, x, w, null, cw, cb, R, I, O);
  same("linear dW (overwrite)", zw, cw); same("linear db (overwrite)", zb, cb);
  same("reference dW (overwrite)", rw, cw, 1e-7); same("reference db (overwrite)", rb, cb, 1e-7);

  const dk1 = new Uint8Array(n), dk2 = new Uint8Array(n);
  ref.dropoutForward(gx, o1, dk1, n, { p: 0.1, seed: 9, offset: 5 }); nb.dropoutForward(gx, o2, dk2, n, { p: 0.1, seed: 9, offset: 5 });
  assert.deepEqual(dk2, dk1, "identical dropout masks"); same("dropout", o2, o1, 1e-7);

  const p = rand(n), gg = rand(n), mm = rand(n, 0.1), vv = Float32Array.from(rand(n), (t) => t * t);
  const [pa, ma, va] = [Float32Array.from(p), Float32Array.from(mm), Float32Array.from(vv)];
  ref.adamw(p, gg, mm, vv, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3); nb.adamw(pa, gg, ma, va, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3);
  same("adamw params", pa, p, 1e-7); same("adamw m", ma, mm, 1e-7); same("adamw v", va, vv, 1e-7);
  assert.ok(Math.abs(nb.sumSquares(gg, n) - ref.sumSquares(gg, n)) / ref.sumSquares(gg, n) < 1e-12);
});

const bf16Skip = NATIVE_BF16 ? false : "native addon not built";

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
    ref.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O, overwrite);
    nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O, overwrite);
    same(`bf16 dx (overwrite ${overwrite})`, dx2, dx1, 2e-2);
    same(`bf16 dW (overwrite ${overwrite})`, dw2, dw1, 2e-2);
    same(`bf16 db (overwrite ${overwrite})`, db2, db1, 1e-6); // the bias gradient is summed from fp32 dy
  }
});

test("bf16 copies: a GEMM input converted once and reused gives bit-identical results to converting at every use", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  assert.equal(nb.usesBf16Copies, true);
  const [R, I, O] = [48, 64, 40];
  const x = rand(R * I), w = rand(O * I, 0.1), b = rand(O), dy = rand(R * O);
  const copy = { data: new Uint16Array(R * I), ready: false };
  const y1 = new Float32Array(R * O), y2 = new Float32Array(R * O);
  nb.linearForward(x, w, b, y1, R, I, O, copy);
  assert.equal(copy.ready, true, "the first use fills the copy");
  assert.ok(copy.data.some((h) => h !== 0));
  nb.linearForward(x, w, b, y2, R, I, O, null);
  assert.deepEqual(y1, y2);
  const grads = () => [new Float32Array(R * I), new Float32Array(O * I), new Float32Array(O)] as const;
  const [dx1, dw1, db1] = grads(); const [dx2, dw2, db2] = grads();
  nb.linearBackward(dy, x, w, dx1, dw1, db1, R, I, O, false, copy);
  nb.linearBackward(dy, x, w, dx2, dw2, db2, R, I, O, false, null);
  assert.deepEqual(dw1, dw2); assert.deepEqual(dx1, dx2); assert.deepEqual(db1, db2);
  // a filled copy is trusted, not re-converted: stale contents show up in dW
  copy.data.fill(0);
  const dw3 = new Float32Array(O * I);
  nb.linearBackward(dy, x, w, null, dw3, null, R, I, O, true, copy);
  assert.ok(dw3.every((t) => t === 0));

  const shape = { batch: 2, seqLen: 8, heads: 2, headDim: 16 };
  const an = 2 * 8 * 32, P = 2 * 2 * 64;
  const q = rand(an), k = rand(an), v = rand(an), dctx = rand(an), mask = new Float32Array(16);
  const mk = () => ({ q: { data: new Uint16Array(an), ready: false }, k: { data: new Uint16Array(an), ready: false }, v: { data: new Uint16Array(an), ready: false } });
  const copies = mk();
  const out = () => ({ probs: new Float32Array(P), ctx: new Float32Array(an), dq: new Float32Array(an), dk: new Float32Array(an), dv: new Float32Array(an) });
  const a1 = out(), a2 = out();
  nb.attentionForward(q, k, v, mask, shape, a1.probs, a1.ctx, null, null, copies);
  assert.ok(copies.q.ready && copies.k.ready && copies.v.ready);
  nb.attentionForward(q, k, v, mask, shape, a2.probs, a2.ctx, null, null, null);
  assert.deepEqual(a1.ctx, a2.ctx);
  nb.attentionBackward(q, k, v, a1.probs, null, 0, dctx, shape, a1.dq, a1.dk, a1.dv, copies);
  nb.attentionBackward(q, k, v, a2.probs, null, 0, dctx, shape, a2.dq, a2.dk, a2.dv, null);
  assert.deepEqual(a1.dq, a2.dq); assert.deepEqual(a1.dk, a2.dk); assert.deepEqual(a1.dv, a2.dv);
});

test("bf16 attention (batched oneDNN path) stays within bf16 bounds of the reference, with identical dropout masks", { skip: bf16Skip }, () => {
  const nb = NATIVE_BF16!;
  const shape = { batch: 2, seqLen: 12, heads: 2, headDim: 16 };
  const an = 2 * 12 * 32, P = 2 * 2 * 144;
  const q = rand(an), k = rand(an), v = rand(an), dctx = rand(an);
  const mask = Float32Array.from({ length: 24 }, (_, i) => (i % 12 > 9 ? -Infinity : 0));
  const drop = { p: 0.1, seed: 77, offset: 3 };
  const p1 = new Float32Array(P), p2 = new Float32Array(P), c1 = new Float32Array(an), c2 = new Float32Array(an);
  const k1 = new Uint8Array(P), k2 = new Uint8Array(P);
  ref.attentionForward(q, k, v, mask, shape, p1, c1, drop, k1);
  nb.attentionForward(q, k, v, mask, shape, p2, c2, drop, k2);
  assert.deepEqual(k2, k1);
  same("bf16 probs", p2, p1, 2e-2);
  same("bf16 ctx", c2, c1, 2e-2);
  // probs index ((b·H + h)·T + row)·T + key: masked keys get exactly 0.
  for (let i = 0; i < P; i++) if (mask[Math.floor(i / 288) * 12 + (i % 12)] === -Infinity) assert.equal(p2[i], 0);
  const g = () => [new Float32Array(an), new Float32Array(an), new Float32Array(an)] as const;
  const [q1, kk1, v1] = g(); const [q2, kk2, v2] = g();
  ref.attentionBackward(q, k, v, p1, k1, 0.1, dctx, shape, q1, kk1, v1);
  nb.attentionBackward(q, k, v, p2, k2, 0.1, dctx, shape, q2, kk2, v2);
  same("bf16 dq", q2, q1, 2e-2); same("bf16 dk", kk2, kk1, 2e-2); same("bf16 dv", v2, v1, 2e-2);

  const cls = { ...shape, queryLen: 1 }; // [CLS]-only: q/ctx [B, W], probs [B, H, 1, T]
  const cq = rand(2 * 32), cdctx = rand(2 * 32);
  const cp1 = new Float32Array(48), cp2 = new Float32Array(48), cc1 = new Float32Array(64), cc2 = new Float32Array(64);
  const ck1 = new Uint8Array(48), ck2 = new Uint8Array(48);
  ref.attentionForward(cq, k, v, mask, cls, cp1, cc1, drop, ck1);
  nb.attentionForward(cq, k, v, mask, cls, cp2, cc2, drop, ck2);
  assert.deepEqual(ck2, ck1);
  same("bf16 cls probs", cp2, cp1, 2e-2); same("bf16 cls ctx", cc2, cc1, 2e-2);
  const [cq1, ckk1, cv1] = [new Float32Array(64), new Float32Array(an), new Float32Array(an)];
  const [cq2, ckk2, cv2] = [new Float32Array(64), new Float32Array(an), new Float32Array(an)];
  ref.attentionBackward(cq, k, v, cp1, ck1, 0.1, cdctx, cls, cq1, ckk1, cv1);
  nb.attentionBackward(cq, k, v, cp2, ck2, 0.1, cdctx, cls, cq2, ckk2, cv2);
  same("bf16 cls dq", cq2, cq1, 2e-2); same("bf16 cls dk", ckk2, ckk1, 2e-2); same("bf16 cls dv", cv2, cv1, 2e-2);
});
