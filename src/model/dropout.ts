/** Dropout bookkeeping shared by the encoder's modules and the heads. */
import type { DropoutSpec } from "../backend/types.js";

/** What a dropout's backward needs: the kept-mask (null when nothing was dropped or it is not kept) and p. */
export interface DropoutCache {
  keep: Uint8Array | null;
  p: number;
}

/** Counter-based dropout streams: every call site gets its own slice of the step's stream. */
export class DropoutStream {
  private offset = 0;
  constructor(private readonly seed: number) {}
  next(p: number, n: number): DropoutSpec {
    const spec = { p, seed: this.seed, offset: this.offset };
    this.offset = (this.offset + n) >>> 0;
    return spec;
  }
}
