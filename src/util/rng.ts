/**
 * Deterministic random numbers. Dropout uses a counter-based hash (the same formula in the C++ addon, so both
 * backends draw identical masks); shuffling and weight initialisation use a small seeded generator whose whole
 * state is one number, which makes checkpoints able to save and restore it exactly.
 */

/** A 32-bit integer mix (lowbias32 by Chris Wellons). */
export function hash32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Uniform 32-bit draw number `counter` of stream `seed`. */
export function streamDraw(seed: number, counter: number): number {
  return hash32((seed ^ hash32(counter >>> 0)) >>> 0);
}

/** Keep threshold for dropout: keep when draw ≥ threshold, so P(drop) = p. */
export function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

/** Seed for the dropout stream of one optimizer step. */
export function stepSeed(seed: number, step: number, microBatch: number): number {
  return hash32(hash32(seed) ^ hash32(step * 1000003 + microBatch));
}

/** mulberry32: a tiny seeded PRNG with 32 bits of state. */
export class Rng {
  state: number;
  constructor(seed: number) {
    this.state = hash32(seed) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = this.next();
    while (u <= 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** Fisher–Yates shuffle of 0..n−1. */
  permutation(n: number): number[] {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}
