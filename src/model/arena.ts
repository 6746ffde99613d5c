/**
 * Reusable scratch buffers for one forward+backward pass. Allocating (and zero-filling, and page-faulting) the
 * activations of a BERT-base step anew costs seconds of system time; the arena hands out the same buffers step
 * after step instead. Buffers are keyed by length, so batches of different shapes each find their own; lengths
 * a whole pass did not use are released by releaseUnused() at the start of the next, which bounds memory to
 * about one pass.
 *
 * Buffers come back with stale contents: callers must fully overwrite them, or ask for `zeros`.
 */
import type { FArray } from "../backend/types.js";
import { allocFloat, type DType } from "./params.js";

interface Pool<T> {
  free: T[];
  used: T[];
  /** Handed out since the last releaseUnused(). */
  touched: boolean;
}

export class Arena {
  private floats = new Map<number, Pool<FArray>>();
  private bytes = new Map<number, Pool<Uint8Array>>();
  private halves = new Map<number, Pool<Uint16Array>>();

  constructor(private readonly dtype: DType) {}

  /** Everything handed out before becomes reusable (a new pass, or for scratch arenas a new module). */
  reset(): void {
    for (const pools of this.kinds()) {
      for (const pool of pools.values()) {
        pool.free.push(...pool.used);
        pool.used.length = 0;
      }
    }
  }

  /** Drop the buffers of lengths not handed out since the last call (once per pass, after reset). */
  releaseUnused(): void {
    for (const pools of this.kinds()) {
      for (const [len, pool] of pools) {
        if (!pool.touched && pool.used.length === 0) pools.delete(len);
        pool.touched = false;
      }
    }
  }

  private kinds(): Map<number, Pool<unknown>>[] {
    return [this.floats, this.bytes, this.halves] as Map<number, Pool<unknown>>[];
  }

  float(n: number): FArray {
    return take(this.floats, n, () => allocFloat(this.dtype, n));
  }

  zeros(n: number): FArray {
    const a = this.float(n);
    a.fill(0);
    return a;
  }

  byte(n: number): Uint8Array {
    return take(this.bytes, n, () => new Uint8Array(n));
  }

  /** 16-bit buffers (bf16 copies of activations). */
  u16(n: number): Uint16Array {
    return take(this.halves, n, () => new Uint16Array(n));
  }
}

function take<T>(pools: Map<number, Pool<T>>, n: number, make: () => T): T {
  let pool = pools.get(n);
  if (!pool) pools.set(n, (pool = { free: [], used: [], touched: false }));
  pool.touched = true;
  const buf = pool.free.pop() ?? make();
  pool.used.push(buf);
  return buf;
}
