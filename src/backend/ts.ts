/**
 * The TypeScript reference backend: plain loops, float64 accumulation, no tricks. It is the specification the
 * native backend is tested against, and it runs float64 tensors for finite-difference gradient checks.
 */
import type { AttentionShape, Backend, DropoutSpec, FArray } from "./types.js";
import { dropThreshold, streamDraw } from "../util/rng.js";

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const INV_SQRT2 = 0.7071067811865476;
const INV_SQRT_2PI = 0.3989422804014327;

/**
 * erf to float64 accuracy. Math has none. For |x| < 3 the all-positive series
 * erf(x) = 2/√π · e^{−x²} · Σ (2x²)ⁿ x / (2n+1)!! (no cancellation); beyond, the continued fraction of erfc.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  if (ax < 3) {
    const x2 = 2 * ax * ax;
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= x2 / (2 * n + 1);
      sum += term;
      if (term < sum * 1e-17) break;
    }
    return Math.sign(x) * TWO_OVER_SQRT_PI * Math.exp(-ax * ax) * sum;
  }
  // erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))), evaluated bottom-up.
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

/** C[M,N] = op(A)[M,K] · op(B)[K,N] (+ C when `accumulate`), with float64 sums; ld* are the stored row strides. */
function gemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: FArray, lda: number, B: FArray, ldb: number, C: FArray, ldc: number, accumulate: boolean,
): void {
  const acc = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const a = transA ? A[k * lda + i]! : A[i * lda + k]!;
      if (a === 0) continue;
      if (transB) {
        for (let j = 0; j < N; j++) acc[j]! += a * B[j * ldb + k]!;
      } else {
        const row = k * ldb;
        for (let j = 0; j < N; j++) acc[j]! += a * B[row + j]!;
      }
    }
    const c = i * ldc;
    if (accumulate) for (let j = 0; j < N; j++) C[c + j]! += acc[j]!;
    else for (let j = 0; j < N; j++) C[c + j] = acc[j]!;
  }
}

/**
 * The keys and query rows sequence b's attention computes (see AttentionShape.lengths), and the first row of its
 * keys/values and of its queries/context in q, k, v, ctx (padded layout, or packed with AttentionShape.starts).
 */
function attentionRows(shape: AttentionShape, b: number): { keys: number; queries: number; kvRow: number; qRow: number } {
  const T = shape.seqLen;
  const Tq = shape.queryLen ?? T;
  const keys = shape.lengths?.[b] ?? T;
  const kvRow = shape.starts ? shape.starts[b]! : b * T;
  return { keys, queries: Tq === T ? keys : Tq, kvRow, qRow: Tq === T ? kvRow : b * Tq };
}

function softmaxRowsInPlace(s: Float64Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let max = -Infinity;
    for (let j = 0; j < cols; j++) if (s[o + j]! > max) max = s[o + j]!;
    if (max === -Infinity) {
      // Every key masked: HF's additive finfo.min mask makes the row uniform, so do the same.
      for (let j = 0; j < cols; j++) s[o + j] = 1 / cols;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < cols; j++) {
      const e = s[o + j] === -Infinity ? 0 : Math.exp(s[o + j]! - max);
      s[o + j] = e;
      sum += e;
    }
    for (let j = 0; j < cols; j++) s[o + j]! /= sum;
  }
}

/** Gathers never index outside a table (the model checks ids first, with the config's names; this is the backstop). */
function checkIds(ids: Int32Array, rows: number, limit: number, skip: number | null, what: string): void {
  for (let r = 0; r < rows; r++) {
    const id = ids[r]!;
    if (id !== skip && !(id >= 0 && id < limit)) throw new RangeError(`typescript backend: id ${id} at row ${r} is outside the ${what} table (${limit} rows)`);
  }
}

/** √(2/π), gelu_new's constant. */
const GELU_NEW_C = Math.sqrt(2 / Math.PI);

export const tsBackend: Backend = {
  name: "typescript",
  supportsFloat64: true,
  // packedAttention takes packed rows at any length: nothing to round up to.
  packedLengthMultiple: 1,
  // No kernels per row count here, but packed batches keep the native backend's rows, so that both backends compute
  // the same rows (the parity tests compare them).
  rowCountMultiple: 32,

  linearForward(x, w, b, y, rows, inF, outF) {
    gemm(false, true, rows, outF, inF, x, inF, w, inF, y, outF, false);
    for (let r = 0; r < rows; r++) for (let j = 0; j < outF; j++) y[r * outF + j]! += b[j]!;
  },

  linearBackward(dy, x, w, dx, dw, db, rows, inF, outF, opts = {}) {
    const { overwriteGrads = false, geluInput = null, accumulateDx = false } = opts;
    if (geluInput) {
      const d = new (dy instanceof Float64Array ? Float64Array : Float32Array)(rows * outF);
      tsBackend.geluBackward(geluInput, dy, d, rows * outF);
      dy = d;
    }
    if (dx) gemm(false, false, rows, inF, outF, dy, outF, w, inF, dx, inF, accumulateDx);
    if (dw) gemm(true, false, outF, inF, rows, dy, outF, x, inF, dw, inF, !overwriteGrads);
    if (db) {
      for (let j = 0; j < outF; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += dy[r * outF + j]!;
        db[j] = (overwriteGrads ? 0 : db[j]!) + s;
      }
    }
  },

  add(a, b, out, n) {
    for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
  },

  geluForward(x, y, n) {
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      y[i] = 0.5 * v * (1 + erf(v * INV_SQRT2));
    }
  },

  geluBackward(x, dy, dx, n) {
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const cdf = 0.5 * (1 + erf(v * INV_SQRT2));
      const pdf = INV_SQRT_2PI * Math.exp(-0.5 * v * v);
      dx[i] = dy[i]! * (cdf + v * pdf);
    }
  },

  tanhForward(x, y, n) {
    for (let i = 0; i < n; i++) y[i] = Math.tanh(x[i]!);
  },

  tanhBackward(y, dy, dx, n) {
    for (let i = 0; i < n; i++) dx[i] = dy[i]! * (1 - y[i]! * y[i]!);
  },

  activationForward(kind, x, y, n) {
    if (kind === "relu") {
      for (let i = 0; i < n; i++) y[i] = x[i]! > 0 ? x[i]! : 0;
      return;
    }
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      y[i] = 0.5 * v * (1 + Math.tanh(GELU_NEW_C * (v + 0.044715 * v * v * v)));
    }
  },

  activationBackward(kind, x, dy, dx, n) {
    if (kind === "relu") {
      for (let i = 0; i < n; i++) dx[i] = x[i]! > 0 ? dy[i]! : 0;
      return;
    }
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const t = Math.tanh(GELU_NEW_C * (v + 0.044715 * v * v * v));
      dx[i] = dy[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_NEW_C * (1 + 3 * 0.044715 * v * v));
    }
  },

  layerNormForward(x, gamma, beta, y, mean, rstd, rows, cols, eps) {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mu = 0;
      for (let j = 0; j < cols; j++) mu += x[o + j]!;
      mu /= cols;
      let variance = 0;
      for (let j = 0; j < cols; j++) {
        const d = x[o + j]! - mu;
        variance += d * d;
      }
      variance /= cols; // biased, as torch.nn.LayerNorm
      const rs = 1 / Math.sqrt(variance + eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (let j = 0; j < cols; j++) y[o + j] = (x[o + j]! - mu) * rs * gamma[j]! + beta[j]!;
    }
  },

  layerNormBackward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols) {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const mu = mean[r]!;
      const rs = rstd[r]!;
      let sumG = 0;
      let sumGX = 0;
      for (let j = 0; j < cols; j++) {
        const xhat = (x[o + j]! - mu) * rs;
        const g = dy[o + j]! * gamma[j]!;
        sumG += g;
        sumGX += g * xhat;
        if (dgamma) dgamma[j]! += dy[o + j]! * xhat;
        if (dbeta) dbeta[j]! += dy[o + j]!;
      }
      const mG = sumG / cols;
      const mGX = sumGX / cols;
      for (let j = 0; j < cols; j++) {
        const xhat = (x[o + j]! - mu) * rs;
        dx[o + j] = rs * (dy[o + j]! * gamma[j]! - mG - xhat * mGX);
      }
    }
  },

  attentionForward({ q, k, v, keyMask, shape, probs, ctx, dropout, keep }) {
    const { batch: B, seqLen: T, heads: H, headDim: D } = shape;
    const Tq = shape.queryLen ?? T;
    const W = H * D;
    const scale = 1 / Math.sqrt(D);
    const threshold = dropout ? dropThreshold(dropout.p) : 0;
    const keepScale = dropout ? 1 / (1 - dropout.p) : 1;
    for (let b = 0; b < B; b++) {
      const { keys: n, queries: nq, kvRow, qRow } = attentionRows(shape, b);
      const s = new Float64Array(nq * n); // this (batch, head)'s scores, then probabilities, rows of n
      for (let h = 0; h < H; h++) {
        const kvBase = kvRow * W + h * D; // keys/values of this (batch, head)
        const qBase = qRow * W + h * D; // its query rows (and ctx rows)
        for (let i = 0; i < nq; i++) {
          for (let j = 0; j < n; j++) {
            const m = keyMask[b * T + j]!;
            if (m === -Infinity) {
              s[i * n + j] = -Infinity;
              continue;
            }
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[qBase + i * W + d]! * k[kvBase + j * W + d]!;
            s[i * n + j] = dot * scale + m;
          }
        }
        softmaxRowsInPlace(s, nq, n);
        const pOff = (b * H + h) * Tq * T;
        for (let i = 0; i < nq; i++) {
          for (let j = 0; j < n; j++) {
            const t = pOff + i * T + j;
            if (probs) probs[t] = s[i * n + j]!;
            if (dropout) {
              const kept = streamDraw(dropout.seed, dropout.offset + t) >= threshold;
              if (keep) keep[t] = kept ? 1 : 0;
              s[i * n + j] = kept ? s[i * n + j]! * keepScale : 0;
            }
          }
        }
        for (let i = 0; i < nq; i++) {
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < n; j++) acc += s[i * n + j]! * v[kvBase + j * W + d]!;
            ctx[qBase + i * W + d] = acc;
          }
        }
      }
    }
  },

  packedAttention: (shape) => (shape.queryLen ?? shape.seqLen) === shape.seqLen,

  attentionBackward({ q, k, v, probs, keep, dropoutP, dctx, shape, dq, dk, dv }) {
    const { batch: B, seqLen: T, heads: H, headDim: D } = shape;
    const Tq = shape.queryLen ?? T;
    const W = H * D;
    const scale = 1 / Math.sqrt(D);
    const keepScale = keep ? 1 / (1 - dropoutP) : 1;
    for (let b = 0; b < B; b++) {
      const { keys: n, queries: nq, kvRow, qRow } = attentionRows(shape, b);
      const pr = new Float64Array(nq * n); // probabilities, rows of n
      const pd = new Float64Array(nq * n); // after dropout
      const dp = new Float64Array(nq * n);
      for (let h = 0; h < H; h++) {
        const kvBase = kvRow * W + h * D;
        const qBase = qRow * W + h * D;
        const pOff = (b * H + h) * Tq * T;
        for (let i = 0; i < nq; i++) {
          for (let j = 0; j < n; j++) {
            const t = pOff + i * T + j;
            pr[i * n + j] = probs[t]!;
            pd[i * n + j] = keep ? (keep[t] ? probs[t]! * keepScale : 0) : probs[t]!;
          }
        }
        // dV = P'ᵀ dctx ; dP' = dctx Vᵀ
        for (let j = 0; j < n; j++) {
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let i = 0; i < nq; i++) acc += pd[i * n + j]! * dctx[qBase + i * W + d]!;
            dv[kvBase + j * W + d] = acc;
          }
        }
        for (let i = 0; i < nq; i++) {
          for (let j = 0; j < n; j++) {
            let acc = 0;
            for (let d = 0; d < D; d++) acc += dctx[qBase + i * W + d]! * v[kvBase + j * W + d]!;
            if (keep) acc = keep[pOff + i * T + j] ? acc * keepScale : 0;
            dp[i * n + j] = acc;
          }
        }
        // softmax backward: dS = P ⊙ (dP − Σ_j dP·P), then the 1/√D scale.
        for (let i = 0; i < nq; i++) {
          let dot = 0;
          for (let j = 0; j < n; j++) dot += dp[i * n + j]! * pr[i * n + j]!;
          for (let j = 0; j < n; j++) dp[i * n + j] = pr[i * n + j]! * (dp[i * n + j]! - dot) * scale;
        }
        for (let i = 0; i < nq; i++) {
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < n; j++) acc += dp[i * n + j]! * k[kvBase + j * W + d]!;
            dq[qBase + i * W + d] = acc;
          }
        }
        for (let j = 0; j < n; j++) {
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let i = 0; i < nq; i++) acc += dp[i * n + j]! * q[qBase + i * W + d]!;
            dk[kvBase + j * W + d] = acc;
          }
        }
      }
    }
  },

  dropoutForward(x, y, keep, n, spec: DropoutSpec) {
    const threshold = dropThreshold(spec.p);
    const s = 1 / (1 - spec.p);
    for (let i = 0; i < n; i++) {
      const kept = streamDraw(spec.seed, spec.offset + i) >= threshold;
      keep[i] = kept ? 1 : 0;
      y[i] = kept ? x[i]! * s : 0;
    }
  },

  dropoutAddLayerNorm({ x, residual, gamma, beta, sum, y, mean, rstd, rows, cols, eps, dropout, keep }) {
    const n = rows * cols;
    if (dropout) tsBackend.dropoutForward(x, sum, keep!, n, dropout);
    tsBackend.add(dropout ? sum : x, residual, sum, n);
    tsBackend.layerNormForward(sum, gamma, beta, y, mean, rstd, rows, cols, eps);
  },

  dropoutBackward(dy, dx, keep, n, p) {
    const s = 1 / (1 - p);
    for (let i = 0; i < n; i++) dx[i] = keep[i] ? dy[i]! * s : 0;
  },

  embeddingForward(ids, posIds, typeIds, word, pos, type, out, rows, hidden) {
    checkIds(ids, rows, word.length / hidden, null, "word");
    checkIds(posIds, rows, pos.length / hidden, null, "position");
    checkIds(typeIds, rows, type.length / hidden, null, "token type");
    for (let r = 0; r < rows; r++) {
      const w = ids[r]! * hidden;
      const p = posIds[r]! * hidden;
      const t = typeIds[r]! * hidden;
      const o = r * hidden;
      for (let j = 0; j < hidden; j++) out[o + j] = word[w + j]! + pos[p + j]! + type[t + j]!;
    }
  },

  embeddingBackward(ids, dOut, table, rows, hidden, skipId) {
    checkIds(ids, rows, table.length / hidden, skipId, "embedding gradient");
    for (let r = 0; r < rows; r++) {
      const id = ids[r]!;
      if (id === skipId) continue;
      const o = id * hidden;
      for (let j = 0; j < hidden; j++) table[o + j]! += dOut[r * hidden + j]!;
    }
  },

  crossEntropyForward(logits, labels, probs, rows, classes) {
    let loss = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * classes;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) max = Math.max(max, logits[o + c]!);
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c]! - max);
      const logSum = Math.log(sum) + max;
      for (let c = 0; c < classes; c++) probs[o + c] = Math.exp(logits[o + c]! - logSum);
      const label = labels[r]!;
      if (label >= 0) loss += logSum - logits[o + label]!;
    }
    return loss;
  },

  crossEntropyBackward(probs, labels, dlogits, rows, classes, scale) {
    for (let r = 0; r < rows; r++) {
      const o = r * classes;
      const label = labels[r]!;
      for (let c = 0; c < classes; c++) {
        dlogits[o + c] = label < 0 ? 0 : (probs[o + c]! - (c === label ? 1 : 0)) * scale;
      }
    }
  },

  adamw({ p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale = 1 }) {
    const bc1 = 1 - Math.pow(beta1, step);
    const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    const stepSize = lr / bc1;
    const decay = 1 - lr * weightDecay;
    // The scaled gradient rounds to g's own precision, as scale() storing it back would.
    const round = g instanceof Float32Array ? Math.fround : (x: number): number => x;
    for (let i = 0; i < n; i++) {
      const gi = gradScale === 1 ? g[i]! : round(g[i]! * gradScale);
      if (weightDecay !== 0) p[i] = p[i]! * decay;
      // Read the moments back after storing so a float32 state rounds exactly as torch's does.
      m[i] = beta1 * m[i]! + (1 - beta1) * gi;
      v[i] = beta2 * v[i]! + (1 - beta2) * gi * gi;
      p[i] = p[i]! - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bc2Sqrt + eps);
    }
  },

  sumSquares(x, n) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i]! * x[i]!;
    return s;
  },

  scale(x, n, s) {
    for (let i = 0; i < n; i++) x[i]! *= s;
  },
};
