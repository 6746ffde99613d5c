/** Every kernel's backward against central finite differences of its forward, in float64. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tsBackend as be, erf } from "../../src/backend/ts.js";
import { Rng } from "../../src/util/rng.js";

const rng = new Rng(1);
const rand = (n: number, s = 1): Float64Array => Float64Array.from({ length: n }, () => rng.normal() * s);
const dot = (a: Float64Array, b: Float64Array): number => a.reduce((s, v, i) => s + v * b[i]!, 0);

/** Check d(⟨w, f(x)⟩)/dx = analytic, for a random projection w. */
function check(name: string, x: Float64Array, f: (x: Float64Array) => Float64Array, analytic: Float64Array, w: Float64Array): void {
  const h = 1e-6;
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < x.length; i++) {
    const xp = x.slice(); xp[i]! += h;
    const xm = x.slice(); xm[i]! -= h;
    const fd = (dot(w, f(xp)) - dot(w, f(xm))) / (2 * h);
    maxErr = Math.max(maxErr, Math.abs(fd - analytic[i]!));
    maxRef = Math.max(maxRef, Math.abs(fd));
  }
  assert.ok(maxErr <= 1e-7 * Math.max(1, maxRef), `${name}: max |fd − analytic| = ${maxErr}`);
}

test("erf matches known values to float64 precision", () => {
  assert.ok(Math.abs(erf(0.5) - 0.5204998778130465) < 1e-15);
  assert.ok(Math.abs(erf(1) - 0.8427007929497149) < 1e-15);
  assert.ok(Math.abs(erf(2.5) - 0.9995930479825550) < 1e-15);
  assert.ok(Math.abs(erf(3.5) - 0.9999992569016276) < 1e-15);
  assert.ok(Math.abs(erf(-1.2) + 0.9103139782296354) < 1e-15);
});

test("linear backward (dx, dW, db)", () => {
  const [R, I, O] = [3, 4, 5];
  const x = rand(R * I), w = rand(O * I), b = rand(O), proj = rand(R * O);
  const fwd = (xx: Float64Array, ww: Float64Array, bb: Float64Array): Float64Array => {
    const y = new Float64Array(R * O); be.linearForward(xx, ww, bb, y, R, I, O); return y;
  };
  const dx = new Float64Array(R * I), dw = new Float64Array(O * I), db = new Float64Array(O);
  be.linearBackward(proj, x, w, dx, dw, db, R, I, O);
  check("dx", x, (v) => fwd(v, w, b), dx, proj);
  check("dW", w, (v) => fwd(x, v, b), dw, proj);
  check("db", b, (v) => fwd(x, w, v), db, proj);
});

test("gelu and tanh backward", () => {
  const n = 12;
  const x = rand(n, 2), proj = rand(n);
  const gelu = (v: Float64Array): Float64Array => { const y = new Float64Array(n); be.geluForward(v, y, n); return y; };
  const dg = new Float64Array(n); be.geluBackward(x, proj, dg, n);
  check("gelu", x, gelu, dg, proj);
  const tanh = (v: Float64Array): Float64Array => { const y = new Float64Array(n); be.tanhForward(v, y, n); return y; };
  const dt = new Float64Array(n); be.tanhBackward(tanh(x), proj, dt, n);
  check("tanh", x, tanh, dt, proj);
});

test("layernorm backward (dx, dgamma, dbeta)", () => {
  const [R, C] = [3, 6];
  const x = rand(R * C, 2), g = rand(C), bta = rand(C), proj = rand(R * C);
  const fwd = (xx: Float64Array, gg: Float64Array, bb: Float64Array): Float64Array => {
    const y = new Float64Array(R * C); be.layerNormForward(xx, gg, bb, y, new Float64Array(R), new Float64Array(R), R, C, 1e-12); return y;
  };
  const mean = new Float64Array(R), rstd = new Float64Array(R);
  be.layerNormForward(x, g, bta, new Float64Array(R * C), mean, rstd, R, C, 1e-12);
  const dx = new Float64Array(R * C), dg = new Float64Array(C), db = new Float64Array(C);
  be.layerNormBackward(proj, x, mean, rstd, g, dx, dg, db, R, C);
  check("dx", x, (v) => fwd(v, g, bta), dx, proj);
  check("dgamma", g, (v) => fwd(x, v, bta), dg, proj);
  check("dbeta", bta, (v) => fwd(x, g, v), db, proj);
});

for (const withDropout of [false, true]) {
  test(`attention backward (dq, dk, dv) with mask${withDropout ? " and dropout" : ""}`, () => {
    const shape = { batch: 2, seqLen: 4, heads: 2, headDim: 3 };
    const n = shape.batch * shape.seqLen * shape.heads * shape.headDim;
    const q = rand(n), k = rand(n), v = rand(n), proj = rand(n);
    const mask = Float32Array.from([0, 0, 0, -Infinity, 0, 0, -Infinity, -Infinity]);
    const P = shape.batch * shape.heads * shape.seqLen * shape.seqLen;
    const drop = withDropout ? { p: 0.3, seed: 99, offset: 5 } : null;
    const fwd = (qq: Float64Array, kk: Float64Array, vv: Float64Array): Float64Array => {
      const ctx = new Float64Array(n);
      be.attentionForward({ q: qq, k: kk, v: vv, keyMask: mask, shape, probs: new Float64Array(P), ctx, dropout: drop, keep: drop ? new Uint8Array(P) : null });
      return ctx;
    };
    const probs = new Float64Array(P);
    const keep = drop ? new Uint8Array(P) : null;
    be.attentionForward({ q, k, v, keyMask: mask, shape, probs, ctx: new Float64Array(n), dropout: drop, keep });
    if (keep) assert.ok(keep.includes(0) && keep.includes(1));
    const dq = new Float64Array(n), dk = new Float64Array(n), dv = new Float64Array(n);
    be.attentionBackward({ q, k, v, probs, keep, dropoutP: drop?.p ?? 0, dctx: proj, shape, dq, dk, dv });
    check("dq", q, (x) => fwd(x, k, v), dq, proj);
    check("dk", k, (x) => fwd(q, x, v), dk, proj);
    check("dv", v, (x) => fwd(q, k, x), dv, proj);
  });
}

test("attention with queryLen 1 ([CLS] rows only) equals the first query row of full attention, and its backward checks out", () => {
  const full = { batch: 2, seqLen: 5, heads: 2, headDim: 3 };
  const cls = { ...full, queryLen: 1 };
  const [B, T, W] = [2, 5, 6];
  const q = rand(B * T * W), k = rand(B * T * W), v = rand(B * T * W);
  const mask = Float32Array.from([0, 0, 0, -Infinity, 0, 0, 0, 0, 0, -Infinity]);
  const qCls = new Float64Array(B * W);
  for (let b = 0; b < B; b++) qCls.set(q.subarray(b * T * W, b * T * W + W), b * W);
  const ctxFull = new Float64Array(B * T * W), pFull = new Float64Array(B * 2 * T * T);
  be.attentionForward({ q, k, v, keyMask: mask, shape: full, probs: pFull, ctx: ctxFull, dropout: null, keep: null });
  const ctx = new Float64Array(B * W), probs = new Float64Array(B * 2 * T);
  be.attentionForward({ q: qCls, k, v, keyMask: mask, shape: cls, probs, ctx, dropout: null, keep: null });
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < W; d++) assert.ok(Math.abs(ctx[b * W + d]! - ctxFull[b * T * W + d]!) < 1e-14);
    for (let h = 0; h < 2; h++) for (let j = 0; j < T; j++) {
      assert.ok(Math.abs(probs[(b * 2 + h) * T + j]! - pFull[(b * 2 + h) * T * T + j]!) < 1e-15);
    }
  }
  const drop = { p: 0.3, seed: 5, offset: 2 };
  const fwd = (qq: Float64Array, kk: Float64Array, vv: Float64Array): Float64Array => {
    const c = new Float64Array(B * W);
    be.attentionForward({ q: qq, k: kk, v: vv, keyMask: mask, shape: cls, probs: new Float64Array(B * 2 * T), ctx: c, dropout: drop, keep: new Uint8Array(B * 2 * T) });
    return c;
  };
  const keep = new Uint8Array(B * 2 * T);
  be.attentionForward({ q: qCls, k, v, keyMask: mask, shape: cls, probs, ctx: new Float64Array(B * W), dropout: drop, keep });
  const proj = rand(B * W);
  const dq = new Float64Array(B * W), dk = new Float64Array(B * T * W), dv = new Float64Array(B * T * W);
  be.attentionBackward({ q: qCls, k, v, probs, keep, dropoutP: drop.p, dctx: proj, shape: cls, dq, dk, dv });
  check("dq", qCls, (x) => fwd(x, k, v), dq, proj);
  check("dk", k, (x) => fwd(qCls, x, v), dk, proj);
  check("dv", v, (x) => fwd(qCls, k, x), dv, proj);
});

test("embedding scatter-add skips the padding row; dropout backward uses the forward mask", () => {
  const H = 3;
  const ids = Int32Array.from([2, 0, 2, 1]);
  const table = new Float64Array(4 * H);
  const dOut = rand(4 * H);
  be.embeddingBackward(ids, dOut, table, 4, H, 0);
  assert.deepEqual([...table.subarray(0, H)], [0, 0, 0]);
  for (let j = 0; j < H; j++) assert.ok(Math.abs(table[2 * H + j]! - (dOut[j]! + dOut[2 * H + j]!)) < 1e-15);
  const x = rand(50), y = new Float64Array(50), keep = new Uint8Array(50);
  be.dropoutForward(x, y, keep, 50, { p: 0.5, seed: 3, offset: 0 });
  const dx = new Float64Array(50);
  be.dropoutBackward(x, dx, keep, 50, 0.5);
  for (let i = 0; i < 50; i++) assert.equal(dx[i], keep[i] ? x[i]! * 2 : 0);
});

test("cross-entropy backward", () => {
  const [R, C] = [3, 4];
  const logits = rand(R * C), labels = Int32Array.from([1, 3, 0]);
  const loss = (l: Float64Array): Float64Array => Float64Array.of(be.crossEntropyForward(l, labels, new Float64Array(R * C), R, C));
  const probs = new Float64Array(R * C);
  be.crossEntropyForward(logits, labels, probs, R, C);
  const d = new Float64Array(R * C);
  be.crossEntropyBackward(probs, labels, d, R, C, 1);
  check("dlogits", logits, loss, d, Float64Array.of(1));
});
