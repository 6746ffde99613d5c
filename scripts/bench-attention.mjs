/**
 * Attention alone, measured (a script, not a test): the native bf16 backend's attention at BERT-base's shape (12 heads
 * of 64, T = 128), with the Q/K/V bf16 copies already made as in the model, in the cases BENCHMARKS.md's eighth round
 * compares. Prints JSON lines of milliseconds per call (median of 20 after 3 warm-ups).
 *
 *   train, batch 16:   forward + backward over the whole padded layout, then with the padded rows' lengths
 *                      (train_bf16_padded's 128 … 32) given as AttentionShape.lengths
 *   infer, batch 64:   forward keeping the probabilities (as training does) and keeping none (inference)
 *
 *   npm run build && node scripts/bench-attention.mjs
 */
const dist = new URL("../dist/src/", import.meta.url);
const { loadNativeBackend } = await import(new URL("backend/native.js", dist).href);
const { paddedLengths } = await import(new URL("bench/bench.js", dist).href);
const { Rng } = await import(new URL("util/rng.js", dist).href);

const backend = loadNativeBackend({ precision: "bf16" }).backend;
if (!backend) throw new Error("the native addon is not built (node scripts/build-native.mjs)");
const T = 128, H = 12, D = 64, W = H * D;
const rng = new Rng(5);
const rand = (n) => Float32Array.from({ length: n }, () => rng.normal());

function median(f) {
  for (let i = 0; i < 3; i++) f();
  const times = Array.from({ length: 20 }, () => {
    const t = performance.now();
    f();
    return performance.now() - t;
  }).sort((a, b) => a - b);
  return Number(((times[9] + times[10]) / 2).toFixed(2));
}

function setup(B) {
  const n = B * T * W, P = B * H * T * T;
  const q = rand(n), k = rand(n), v = rand(n), dctx = rand(n);
  const copy = (x) => ({ data: new Uint16Array(n), ready: false, x });
  const copies = { q: copy(q), k: copy(k), v: copy(v) };
  const mask = new Float32Array(B * T);
  backend.attentionForward({ q, k, v, keyMask: mask, shape: { batch: B, seqLen: T, heads: H, headDim: D }, probs: new Float32Array(P), ctx: new Float32Array(n), dropout: null, keep: null, copies });
  return { B, n, P, q, k, v, dctx, mask, copies };
}

// training: forward (probabilities and dropout mask kept) and backward, without and with lengths
{
  const s = setup(16);
  const lengths = Int32Array.from(paddedLengths(T, s.B));
  lengths.forEach((len, b) => s.mask.fill(-Infinity, b * T + len, b * T + T));
  const probs = new Float32Array(s.P), keep = new Uint8Array(s.P), ctx = new Float32Array(s.n);
  const dq = new Float32Array(s.n), dk = new Float32Array(s.n), dv = new Float32Array(s.n);
  const drop = { p: 0.1, seed: 1, offset: 0 };
  for (const withLengths of [false, true]) {
    const shape = { batch: s.B, seqLen: T, heads: H, headDim: D, lengths: withLengths ? lengths : undefined };
    const forward = median(() => backend.attentionForward({ q: s.q, k: s.k, v: s.v, keyMask: s.mask, shape, probs, ctx, dropout: drop, keep, copies: s.copies }));
    const backward = median(() => backend.attentionBackward({ q: s.q, k: s.k, v: s.v, probs, keep, dropoutP: drop.p, dctx: s.dctx, shape, dq, dk, dv, copies: s.copies }));
    console.log(JSON.stringify({ case: "train_padded", batch: s.B, lengths: withLengths, forward_ms: forward, backward_ms: backward }));
  }
}

// inference: forward only, probabilities kept or not
{
  const s = setup(64);
  const probs = new Float32Array(s.P), ctx = new Float32Array(s.n);
  const shape = { batch: s.B, seqLen: T, heads: H, headDim: D };
  for (const kept of [true, false]) {
    const forward = median(() => backend.attentionForward({ q: s.q, k: s.k, v: s.v, keyMask: s.mask, shape, probs: kept ? probs : null, ctx, dropout: null, keep: null, copies: s.copies }));
    console.log(JSON.stringify({ case: "infer", batch: s.B, probabilities_kept: kept, forward_ms: forward }));
  }
}
