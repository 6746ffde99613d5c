/**
 * All parameters of a model live in one flat array (and their gradients in another), with a named view per
 * tensor. One buffer makes the optimizer, gradient clipping, checkpointing and the native backend simple.
 */
import type { FArray } from "../backend/types.js";
import type { BertConfig } from "./config.js";

export type DType = "float32" | "float64";

export interface ParamSpec {
  /** HF state-dict name, e.g. bert.encoder.layer.3.attention.self.query.weight. */
  name: string;
  /** Position in ParamStore.specs (and in every per-parameter array: trainable flags, optimizer step counts). */
  index: number;
  shape: number[];
  offset: number;
  size: number;
  /**
   * Depth of the module the parameter belongs to: 0 embeddings, 1…L encoder layers, L+1 pooler, L+2 classifier.
   * Backprop never needs to go below the lowest trainable depth.
   */
  level: number;
}

/** A hint for a large, untouched buffer (Backend.adviseHugePages). */
export type AdviseMemory = (buffer: ArrayBuffer) => void;

/** A zeroed float buffer; `advise`, for large ones, sees the memory before anything touches it. */
export function allocFloat(dtype: DType, n: number, advise?: AdviseMemory): FArray {
  const buffer = new ArrayBuffer(n * (dtype === "float64" ? 8 : 4));
  advise?.(buffer);
  return dtype === "float64" ? new Float64Array(buffer) : new Float32Array(buffer);
}

/** The values as float32: the array itself when it is one (no copy), else a converted copy. */
export function asFloat32(a: FArray): Float32Array {
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

/** Parameter names and shapes of BertForSequenceClassification, in HF's registration order. */
export function bertParamLayout(c: BertConfig): { name: string; shape: number[]; level: number }[] {
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const L = c.num_hidden_layers;
  const out: { name: string; shape: number[]; level: number }[] = [];
  const add = (name: string, shape: number[], level: number): void => void out.push({ name, shape, level });
  add("bert.embeddings.word_embeddings.weight", [c.vocab_size, H], 0);
  add("bert.embeddings.position_embeddings.weight", [c.max_position_embeddings, H], 0);
  add("bert.embeddings.token_type_embeddings.weight", [c.type_vocab_size, H], 0);
  add("bert.embeddings.LayerNorm.weight", [H], 0);
  add("bert.embeddings.LayerNorm.bias", [H], 0);
  for (let l = 0; l < L; l++) {
    const p = `bert.encoder.layer.${l}.`;
    for (const m of ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]) {
      add(`${p}${m}.weight`, [H, H], l + 1);
      add(`${p}${m}.bias`, [H], l + 1);
    }
    add(`${p}attention.output.LayerNorm.weight`, [H], l + 1);
    add(`${p}attention.output.LayerNorm.bias`, [H], l + 1);
    add(`${p}intermediate.dense.weight`, [I, H], l + 1);
    add(`${p}intermediate.dense.bias`, [I], l + 1);
    add(`${p}output.dense.weight`, [H, I], l + 1);
    add(`${p}output.dense.bias`, [H], l + 1);
    add(`${p}output.LayerNorm.weight`, [H], l + 1);
    add(`${p}output.LayerNorm.bias`, [H], l + 1);
  }
  add("bert.pooler.dense.weight", [H, H], L + 1);
  add("bert.pooler.dense.bias", [H], L + 1);
  add("classifier.weight", [c.num_labels, H], L + 2);
  add("classifier.bias", [c.num_labels], L + 2);
  return out;
}

/** HF Trainer's rule: no weight decay for biases and LayerNorm weights. */
export function isNoDecay(name: string): boolean {
  return name.endsWith(".bias") || name.includes("LayerNorm");
}

export class ParamStore {
  readonly specs: ParamSpec[];
  readonly byName: Map<string, ParamSpec>;
  readonly data: FArray;
  readonly grad: FArray;
  readonly size: number;

  constructor(
    layout: { name: string; shape: number[]; level: number }[],
    readonly dtype: DType,
    private readonly advise?: AdviseMemory,
  ) {
    let offset = 0;
    this.specs = layout.map((l, index) => {
      const size = l.shape.reduce((a, b) => a * b, 1);
      const spec = { ...l, index, offset, size };
      offset += size;
      return spec;
    });
    this.size = offset;
    this.byName = new Map(this.specs.map((s) => [s.name, s]));
    this.data = allocFloat(dtype, offset, advise);
    this.grad = allocFloat(dtype, offset, advise);
  }

  /** A zeroed buffer with one element per parameter value (the optimizer's moments). */
  newBuffer(): FArray {
    return allocFloat(this.dtype, this.size, this.advise);
  }

  spec(name: string): ParamSpec {
    const s = this.byName.get(name);
    if (!s) throw new Error(`unknown parameter ${name}`);
    return s;
  }

  value(name: string): FArray {
    const s = this.spec(name);
    return this.data.subarray(s.offset, s.offset + s.size);
  }

  gradOf(name: string): FArray {
    const s = this.spec(name);
    return this.grad.subarray(s.offset, s.offset + s.size);
  }
}
