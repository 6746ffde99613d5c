/**
 * Reusable scratch memory for one forward+backward pass. Allocating (and zero-filling, and page-faulting) the
 * activations of a BERT-base step anew costs seconds of system time; the arena hands out views of a few large
 * chunks instead, bump-allocated from the first chunk's start after every reset. Batches of different shapes
 * (dynamic padding makes nearly every batch a new sequence length) share the chunks, so a new shape costs nothing
 * once they hold the largest pass seen. When a pass needs more, a new chunk at least as large as all the others
 * together is added; chunks are kept, like PyTorch's caching allocator keeps its blocks. Space a pass leaves unused
 * at the end of a chunk is never touched, so it costs address space, not memory.
 *
 * Buffers come back with stale contents: callers must fully overwrite them, or ask for `zeros`.
 */
import type { FArray } from "../backend/types.js";
import type { AdviseMemory, DType } from "./params.js";

/** Every view starts on a cache line (AVX-512 loads, oneDNN's preferred alignment). */
const ALIGN = 64;
/** Chunk sizes are whole huge pages, so all of a chunk can be backed by them (see `onNewChunk`). */
const GRANULE = 2 << 20;
/** The smallest chunk. */
const MIN_CHUNK = 64 << 20;

/** A buffer being bump-allocated from. */
interface Chunk {
  buffer: ArrayBuffer;
  used: number;
}

export class Arena {
  private readonly chunks: Chunk[] = [];
  /** The chunk being allocated from. */
  private current = 0;

  /** `onNewChunk` sees each new chunk before anything touches it (the native backend asks for huge pages there). */
  constructor(
    private readonly dtype: DType,
    private readonly onNewChunk: AdviseMemory = () => {},
  ) {}

  /** Everything handed out before becomes reusable: a new pass, or for scratch arenas a new module. */
  reset(): void {
    for (const c of this.chunks) c.used = 0;
    this.current = 0;
  }

  /** Bytes the arena holds (address space; only what passes touched is memory). */
  get capacity(): number {
    return this.chunks.reduce((sum, c) => sum + c.buffer.byteLength, 0);
  }

  float(n: number): FArray {
    const bytes = this.dtype === "float64" ? 8 : 4;
    const [buffer, at] = this.take(n * bytes);
    return this.dtype === "float64" ? new Float64Array(buffer, at, n) : new Float32Array(buffer, at, n);
  }

  zeros(n: number): FArray {
    const a = this.float(n);
    a.fill(0);
    return a;
  }

  byte(n: number): Uint8Array {
    const [buffer, at] = this.take(n);
    return new Uint8Array(buffer, at, n);
  }

  /** 16-bit buffers (bf16 copies of activations). */
  u16(n: number): Uint16Array {
    const [buffer, at] = this.take(n * 2);
    return new Uint16Array(buffer, at, n);
  }

  private take(bytes: number): [ArrayBuffer, number] {
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    while (this.current < this.chunks.length && this.chunks[this.current]!.used + size > this.chunks[this.current]!.buffer.byteLength) {
      this.current++;
    }
    if (this.current === this.chunks.length) {
      const bytes = Math.ceil(Math.max(size, MIN_CHUNK, this.capacity) / GRANULE) * GRANULE;
      const buffer = new ArrayBuffer(bytes);
      this.onNewChunk(buffer);
      this.chunks.push({ buffer, used: 0 });
    }
    const chunk = this.chunks[this.current]!;
    const at = chunk.used;
    chunk.used += size;
    return [chunk.buffer, at];
  }
}
