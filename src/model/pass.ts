/**
 * The pass machinery a task model (task-model.ts) runs its modules (modules/) on: the pass arena and two ping-pong
 * scratch arenas, buffer allocation and bf16 copies, and the parameter-level ops (Linear, LayerNorm's backward,
 * dropout) with the trainable/stale-gradient bookkeeping.
 */
import type { Backend, Bf16Copy, FArray, LinearBackwardOptions } from "../backend/types.js";
import type { BertConfig } from "./config.js";
import { Arena } from "./arena.js";
import type { DropoutCache, DropoutStream } from "./dropout.js";
import { allocFloat, type DType, type ParamStore } from "./params.js";
import type { LoraSpec } from "./lora.js";

/** One application of a wrapped Linear in a training pass: what its LoRA backward reads. */
interface LoraSaved {
  /** s · A · dropout(x), [rows, r]. */
  t: FArray;
  /** dropout(x) (x itself without dropout) and its dropout cache. */
  xd: FArray;
  drop: DropoutCache;
}

/** linearBack's variants: the backend's (LinearBackwardOptions), and `addTo`: add dx into this buffer (returned). */
export type LinearBackOptions = Omit<LinearBackwardOptions, "overwriteGrads" | "accumulateDx"> & { addTo?: FArray | null };

export class PassContext {
  /** Per parameter (same order as params.specs): does it train? */
  readonly trainable: boolean[];
  /** Per parameter: does a linear layer's backward produce its gradient (weights and biases of Linear modules)? */
  private readonly isLinearParam: boolean[];
  /**
   * Per parameter: has no gradient been accumulated in it since zeroGrad()? zeroGrad() leaves the gradients of
   * linear layers stale instead of zeroing them (a quarter of a BERT-base step's memory traffic outside GEMMs);
   * their backward then writes instead of adding.
   */
  readonly gradStale: boolean[];
  /** Buffers of the current pass; reset at every forward, so a forward's cache lives until the next. */
  readonly arena: Arena;
  /**
   * Two ping-pong arenas for modules whose activations are not kept (inference, frozen lower layers) and for each
   * layer's backward: module i writes into scratch[i % 2] while reading its input from the other, so memory stays at
   * about two layers.
   */
  private readonly scratch: [Arena, Arena];
  /** Where alloc() takes buffers from right now. */
  current: Arena;
  /** Where allocTemp() takes buffers that only the forward of the current module reads: its scratch arena. */
  temp: Arena;

  /** LoRA (lora.ts): the wrapped Linears' prefixes and, per prefix, a stack of its applications in this pass (ALBERT applies a shared layer many times; backward pops them in reverse). */
  private readonly lora: LoraSpec | null;
  private readonly loraTargets: Set<string>;
  private readonly loraSaved = new Map<string, LoraSaved[]>();
  /** Set by the model for each pass: a training pass saves what LoRA's backward reads, and draws LoRA's dropout from this stream. */
  training = false;
  loraStream: DropoutStream | null = null;
  private readonly zeros = new Map<number, FArray>();

  constructor(readonly config: BertConfig, readonly backend: Backend, readonly dtype: DType, readonly params: ParamStore, lora: LoraSpec | null = null) {
    this.lora = lora;
    this.loraTargets = new Set(lora?.targets ?? []);
    const advise = (buffer: ArrayBuffer): void => backend.adviseHugePages?.(buffer);
    this.arena = new Arena(dtype, advise);
    this.scratch = [new Arena(dtype, advise), new Arena(dtype, advise)];
    this.current = this.temp = this.arena;
    this.trainable = this.params.specs.map(() => true);
    this.isLinearParam = this.params.specs.map((s) => s.kind === "linear");
    this.gradStale = this.params.specs.map(() => false);
  }

  /** Start a new pass: scratch buffers of the previous pass (and so its ForwardCache) are reused from here on. */
  beginPass(): void {
    for (const a of [this.arena, ...this.scratch]) a.reset();
    this.current = this.temp = this.arena;
    this.loraSaved.clear();
  }

  /**
   * Allocate module `index`'s buffers from the pass arena when they are kept for backward, else from scratch;
   * buffers only its forward reads always come from scratch.
   */
  useArenaFor(index: number, save: boolean): void {
    this.temp = this.scratch[index & 1]!;
    this.temp.reset();
    this.current = save ? this.arena : this.temp;
  }

  /** Scratch buffer from the arena (stale contents: overwrite it fully). */
  alloc(n: number): FArray {
    return this.current.float(n);
  }

  /** A buffer that only the current module's forward reads (backward never does), from its scratch arena. */
  allocTemp(n: number): FArray {
    return this.temp.float(n);
  }

  /** An empty bf16 copy for a GEMM input of n elements, when the backend uses them. */
  copyFor(n: number): Bf16Copy | null {
    return this.backend.usesBf16Copies ? { data: this.current.u16(n), ready: false } : null;
  }

  /** A fresh buffer for results that outlive the pass (logits, pooled output, returned hidden states). */
  fresh(n: number): FArray {
    return allocFloat(this.dtype, n);
  }

  w(name: string): FArray {
    return this.params.value(name);
  }

  /** The gradient buffer of a parameter, or null when it is frozen (so no weight gradient is computed). */
  g(name: string): FArray | null {
    const spec = this.params.spec(name);
    return this.trainable[spec.index] ? this.params.gradOf(name) : null;
  }

  /**
   * Start accumulating a new gradient. Gradients of linear layers are not zeroed but marked stale (their next
   * backward overwrites them), so read params.grad only after a backward.
   */
  zeroGrad(): void {
    this.params.specs.forEach((s, i) => {
      if (this.isLinearParam[i]) this.gradStale[i] = true;
      // a frozen parameter's gradient is never written or read (g() is null): its pages stay untouched, which
      // with LoRA keeps the frozen word embeddings' 65 MB (BERT-base) of gradient out of memory
      else if (this.trainable[i]) this.params.grad.fill(0, s.offset, s.offset + s.size);
    });
  }

  dropout(x: FArray, p: number, n: number, stream: DropoutStream | null, save: boolean): { y: FArray; cache: DropoutCache } {
    if (!stream || p === 0) return { y: x, cache: { keep: null, p: 0 } };
    const y = this.alloc(n);
    const keep = this.current.byte(n);
    this.backend.dropoutForward(x, y, keep, n, stream.next(p, n));
    return { y, cache: { keep: save ? keep : null, p } };
  }

  /** sum = dropout(x) + residual (dropout probability p), y = LayerNorm(sum) in one backend pass; y's bf16 copy filled when given. */
  dropoutAddLayerNorm(prefix: string, x: FArray, residual: FArray, rows: number, cols: number, p: number, stream: DropoutStream | null, save: boolean, y: FArray, yCopy: Bf16Copy | null): { y: FArray; sum: FArray; mean: FArray; rstd: FArray; drop: DropoutCache } {
    const n = rows * cols;
    const spec = stream && p > 0 ? stream.next(p, n) : null;
    const keep = spec ? this.current.byte(n) : null;
    const sum = this.alloc(n);
    const mean = this.alloc(rows);
    const rstd = this.alloc(rows);
    this.backend.dropoutAddLayerNorm({
      x, residual, gamma: this.w(`${prefix}.weight`), beta: this.w(`${prefix}.bias`), sum, y, mean, rstd, rows, cols,
      eps: this.config.layer_norm_eps, dropout: spec, keep, yCopy,
    });
    return { y, sum, mean, rstd, drop: { keep: save ? keep : null, p: spec ? p : 0 } };
  }

  dropoutBack(dy: FArray, c: DropoutCache, n: number): FArray {
    if (!c.keep) return dy;
    const dx = this.alloc(n);
    this.backend.dropoutBackward(dy, dx, c.keep, n, c.p);
    return dx;
  }

  /** With `yCopy`, the backend writes only y's bf16 copy (see Backend.linearForward). */
  linear(prefix: string, x: FArray, rows: number, inF: number, outF: number, xCopy: Bf16Copy | null = null, y = this.alloc(rows * outF), yCopy: Bf16Copy | null = null): FArray {
    this.backend.linearForward(x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`), y, rows, inF, outF, xCopy, yCopy);
    if (this.loraTargets.has(prefix)) this.loraForward(prefix, x, rows, inF, outF, y);
    return y;
  }

  /** A zero bias of n elements (the adapter matrices have none). */
  private zeroBias(n: number): FArray {
    let z = this.zeros.get(n);
    if (!z) this.zeros.set(n, (z = allocFloat(this.dtype, n)));
    return z;
  }

  /** y += s · B(A(dropout(x))), as PEFT's lora.Linear; the scale is applied to A's product (r columns, not out). */
  private loraForward(prefix: string, x: FArray, rows: number, inF: number, outF: number, y: FArray): void {
    const { r, scale, dropout } = this.lora!;
    // What backward reads lives in the pass arena; at inference everything is scratch
    const from = this.training ? this.arena : this.temp;
    const saved = this.current;
    this.current = from;
    const d = this.dropout(x, dropout, rows * inF, this.training ? this.loraStream : null, this.training);
    this.current = saved;
    const t = from.float(rows * r);
    this.backend.linearForward(d.y, this.w(`${prefix}.lora_A.weight`), this.zeroBias(r), t, rows, inF, r);
    for (let i = 0; i < t.length; i++) t[i]! *= scale;
    const u = this.temp.float(rows * outF);
    this.backend.linearForward(t, this.w(`${prefix}.lora_B.weight`), this.zeroBias(outF), u, rows, r, outF);
    this.backend.add(y, u, y, rows * outF);
    if (this.training) {
      const stack = this.loraSaved.get(prefix) ?? [];
      stack.push({ t, xd: d.y, drop: d.cache });
      this.loraSaved.set(prefix, stack);
    }
  }

  /** LoRA's share of a wrapped Linear's backward: dB, dA, and (into dx, when given) its input gradient. */
  private loraBackward(prefix: string, dy: FArray, rows: number, inF: number, outF: number, dx: FArray | null): void {
    const { r, scale } = this.lora!;
    const c = this.loraSaved.get(prefix)?.pop();
    if (!c) throw new Error(`LoRA backward of ${prefix} without its forward`);
    const a = `${prefix}.lora_A.weight`;
    const b = `${prefix}.lora_B.weight`;
    // t = s·A·xd: dB = dyᵀ·t; d(A·xd) = s · (dy·B); then dA and the input gradient as a Linear's
    const dt = this.alloc(rows * r);
    this.backend.linearBackward(dy, c.t, this.w(b), dt, this.g(b), null, rows, r, outF, { overwriteGrads: false });
    for (let i = 0; i < dt.length; i++) dt[i]! *= scale;
    if (!dx) {
      this.backend.linearBackward(dt, c.xd, this.w(a), null, this.g(a), null, rows, inF, r, { overwriteGrads: false });
      return;
    }
    if (!c.drop.keep) {
      this.backend.linearBackward(dt, c.xd, this.w(a), dx, this.g(a), null, rows, inF, r, { overwriteGrads: false, accumulateDx: true });
      return;
    }
    const dxd = this.alloc(rows * inF);
    this.backend.linearBackward(dt, c.xd, this.w(a), dxd, this.g(a), null, rows, inF, r, { overwriteGrads: false });
    const back = this.dropoutBack(dxd, c.drop, rows * inF);
    this.backend.add(dx, back, dx, rows * inF);
  }

  /** Is the Linear `prefix` wrapped by a LoRA adapter? */
  hasLora(prefix: string): boolean {
    return this.loraTargets.has(prefix);
  }

  /** Returns dx (or null when not needed); accumulates weight gradients of trainable weights (and LoRA's). See LinearBackOptions. */
  linearBack(prefix: string, dy: FArray, x: FArray, rows: number, inF: number, outF: number, needDx: boolean, opts: LinearBackOptions = {}): FArray | null {
    const { addTo = null, ...backendOpts } = opts;
    const dx = needDx ? addTo ?? this.alloc(rows * inF) : null;
    const wi = this.params.spec(`${prefix}.weight`).index;
    const bi = this.params.spec(`${prefix}.bias`).index;
    const overwrite = this.gradStale[wi]!;
    this.gradStale[wi] = this.gradStale[bi] = false;
    this.backend.linearBackward(dy, x, this.w(`${prefix}.weight`), dx, this.g(`${prefix}.weight`), this.g(`${prefix}.bias`), rows, inF, outF,
      { ...backendOpts, overwriteGrads: overwrite, accumulateDx: addTo !== null });
    if (this.loraTargets.has(prefix)) {
      if (backendOpts.geluInput || backendOpts.dyCopy || backendOpts.dxCopy) throw new Error(`LoRA on ${prefix}: dy must be given in fp32 (layer.ts unfuses GELU's backward for wrapped Linears)`);
      this.loraBackward(prefix, dy, rows, inF, outF, dx);
    }
    return dx;
  }

  layerNormBack(prefix: string, dy: FArray, x: FArray, mean: FArray, rstd: FArray, rows: number, cols: number): FArray {
    const dx = this.alloc(rows * cols);
    this.backend.layerNormBackward(dy, x, mean, rstd, this.w(`${prefix}.weight`), dx, this.g(`${prefix}.weight`), this.g(`${prefix}.bias`), rows, cols);
    return dx;
  }
}
