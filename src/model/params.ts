/**
 * All parameters of a model live in one flat array (and their gradients in another), with a named view per
 * tensor. One buffer makes the optimizer, gradient clipping, checkpointing and the native backend simple.
 */
import type { FArray } from "../backend/types.js";
import { type BertConfig, familyOfConfig } from "./config.js";
import type { Head } from "./heads/head.js";
import { classifierLinears } from "./heads/classification.js";

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
  kind?: LayoutEntry["kind"];
  /**
   * HF Trainer's get_decay_parameter_names: no weight decay for biases and for every parameter of a LayerNorm module,
   * whatever its name (DistilBERT's sa_layer_norm, ALBERT's full_layer_layer_norm).
   */
  noDecay?: boolean;
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

export interface LayoutEntry {
  name: string;
  shape: number[];
  level: number;
  /**
   * Linear weights and biases get their gradient from a linear layer's backward; norm parameters are never decayed;
   * LoRA's adapter matrices (lora.ts) accumulate their gradients from a wrapped Linear's backward; a standalone bias
   * (masked LM's decoder bias) is zeroed each step and accumulated, as an embedding.
   */
  kind: "embedding" | "linear" | "norm" | "lora" | "bias";
}

/**
 * Parameter names and shapes of a family's encoder with a head (by default its …ForSequenceClassification's), in
 * HF's registration order: embeddings (and the projection to hidden_size), the layers (ALBERT: its shared groups),
 * pooler, head.
 */
export function paramLayout(c: BertConfig, head?: Pick<Head, "linears" | "reads" | "others">): LayoutEntry[] {
  const f = familyOfConfig(c);
  const H = c.hidden_size;
  const E = c.embedding_size;
  const I = c.intermediate_size;
  const L = c.num_hidden_layers;
  const out: LayoutEntry[] = [];
  const add = (name: string, shape: number[], level: number, kind: LayoutEntry["kind"]): void => void out.push({ name, shape, level, kind });
  const linear = (prefix: string, outF: number, inF: number, level: number): void => {
    add(`${prefix}.weight`, [outF, inF], level, "linear");
    add(`${prefix}.bias`, [outF], level, "linear");
  };
  const norm = (prefix: string, n: number, level: number): void => {
    add(`${prefix}.weight`, [n], level, "norm");
    add(`${prefix}.bias`, [n], level, "norm");
  };
  const emb = f.embeddings(c);
  add(`${emb.word}.weight`, [c.vocab_size, E], 0, "embedding");
  add(`${emb.position}.weight`, [c.max_position_embeddings, E], 0, "embedding");
  if (emb.tokenType) add(`${emb.tokenType}.weight`, [c.type_vocab_size, E], 0, "embedding");
  if (emb.taskType) add(`${emb.taskType}.weight`, [c.task_type_vocab_size, E], 0, "embedding");
  norm(emb.norm, E, 0);
  const projection = f.projection(c);
  if (projection) linear(projection, H, E, 0);
  const groups = c.num_hidden_groups || L;
  for (let g = 0; g < groups; g++) {
    const n = f.layer(g);
    const level = g * (L / groups) + 1; // a shared group's level is its first use
    for (const m of [n.query, n.key, n.value, n.attentionOutput]) linear(m, H, H, level);
    norm(n.attentionNorm, H, level);
    linear(n.intermediate, I, H, level);
    linear(n.output, H, I, level);
    norm(n.outputNorm, H, level);
  }
  if (f.pooler && (head?.reads ?? "first") === "first") linear(f.pooler, H, H, L + 1);
  for (const m of head?.linears ?? classifierLinears(f.classifier, H, c.num_labels)) linear(m.name, m.outF, m.inF, L + 2);
  for (const p of head?.others ?? []) add(p.name, p.shape, L + 2, p.kind);
  return out;
}

/** HF Trainer's rule by name alone: no weight decay for biases and LayerNorm weights (see ParamSpec.noDecay). */
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
    layout: LayoutEntry[],
    readonly dtype: DType,
    private readonly advise?: AdviseMemory,
  ) {
    let offset = 0;
    this.specs = layout.map((l, index) => {
      const size = l.shape.reduce((a, b) => a * b, 1);
      const spec = { ...l, index, offset, size, noDecay: l.kind === "norm" || l.name.endsWith(".bias") };
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
