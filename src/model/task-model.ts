/**
 * A task model: an encoder of any family (families/, chosen by config.json's model_type) and a task head (heads/,
 * chosen by the task), forward and backward side by side per module (in the spirit of llm.c and candle's bert.rs).
 * Parameters carry HF's state-dict names. For BERT with the classification head it mirrors transformers'
 * modeling_bert.py (other families change names and wire optional modules in, see families/family.ts):
 *
 *   embeddings:  LN(word[ids] + position[t] + token_type[tt]) → dropout
 *   layer:       h1 = LN(dropout(Wo·attention(Wq x, Wk x, Wv x)) + x)
 *                out = LN(dropout(W2·gelu(W1 h1)) + h1)
 *   pooler:      tanh(Wp · out[:, 0])
 *   classifier:  Wc · dropout(pooled)            (dropout = classifier_dropout ?? hidden_dropout_prob)
 *
 * Freezing: frozen parameters get no gradient, and backprop stops below the lowest trainable module; only
 * modules that backprop runs through keep their activations.
 *
 * A head that reads only each sequence's first row (Head.reads "first", as classification) lets the last layer, unless
 * every hidden state is asked for, compute keys and values for all tokens but its query, attention output, feed-forward and
 * LayerNorms for the [CLS] rows alone (exactly the same logits and gradients; ≈7% of a BERT-base step).
 *
 * Padding costs next to nothing: a right-padded batch (every attention mask ones, then zeros) is
 * packed, the padding rows left out of every module; attention is told each sequence's rows and length (on a
 * backend that cannot take packed rows at that shape, it runs on the padded layout, its inputs and outputs moved
 * there and back). HF computes the padding rows and discards them; nothing a real token computes depends on them, so
 * logits and gradients are the same.
 * (A few padding rows are kept, so that row counts come in steps of the backend's rowCountMultiple.)
 */
import type { AttentionCopies, AttentionShape, Backend, Bf16Copy, FArray, LinearBackwardOptions } from "../backend/types.js";
import { type BertConfig, familyOfConfig, maxSequenceLength } from "./config.js";
import type { EmbeddingNames, Family, LayerNames } from "./families/family.js";
import { WeitiaoError } from "../util/errors.js";
import { Arena } from "./arena.js";
import { type DropoutCache, DropoutStream } from "./dropout.js";
import type { Head, HeadContext } from "./heads/head.js";
import { headFor } from "./heads/index.js";
import type { Task } from "./task.js";
import { allocFloat, type DType, paramLayout, type ParamSpec, ParamStore } from "./params.js";

export interface ModelInput {
  /** [batch·seqLen] token ids. */
  inputIds: Int32Array;
  /** [batch·seqLen] 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** [batch·seqLen] segment ids (0 for the first text, 1 for the pair). */
  tokenTypeIds: Int32Array;
  batch: number;
  seqLen: number;
}

export interface ForwardOptions {
  /** Train mode: dropout active (when its probability > 0) and activations saved for backward. */
  train: boolean;
  /** Seed of this micro-batch's dropout stream (train mode only). */
  dropoutSeed?: number;
  /**
   * Also return every hidden state (embedding output, then each layer), [B·T, H] each, as HF's output_hidden_states;
   * at padding rows (values that nothing reads) a packed batch returns HF's values or 0.
   */
  outputHiddenStates?: boolean;
}

/**
 * Where each sequence's tokens are in the rows that every module but attention runs on: packed (the padding rows
 * left out, see the header) or the padded layout itself.
 */
interface TokenRows {
  /** Rows in all: Σ lengths when packed, else batch·seqLen. */
  rows: number;
  /** First row of each sequence (its [CLS] token). */
  starts: Int32Array;
  /** Rows of each sequence: its real tokens, a few more for the last ones (see tokenRows), or seqLen when not packed. */
  lengths: Int32Array;
  packed: boolean;
}

/** Attention's shape for a layer and the key mask that goes with it ([batch · shape.seqLen], 0 or −∞). */
interface AttentionPlan {
  shape: AttentionShape;
  keyMask: Float32Array;
}

/** The typed arrays that move between the packed and padded layouts (activations, their bf16 copies, token ids). */
type RowArray = Float32Array | Float64Array | Uint16Array | Int32Array;

interface EmbeddingCache {
  /** Token ids, position ids and token types of the rows (packed when the batch is). */
  ids: Int32Array;
  posIds: Int32Array;
  typeIds: Int32Array;
  sum: FArray;
  mean: FArray;
  rstd: FArray;
  drop: DropoutCache;
  /** The projection's input (the embeddings' output), when the family projects to hidden_size. */
  projected: FArray;
}

/**
 * With bf16 copies in use, x, xq, q, k, v, ctx, h1, inter and act are forward-only scratch (overwritten by later layers):
 * backward reads them only through `copies`.
 */
interface LayerCache {
  /** The layer's input rows (packed when the batch is); q, k, v below are in the layout attention ran on. */
  x: FArray;
  /** The rows queries are computed for: x itself, or its [CLS] rows when only those are needed. */
  xq: FArray;
  /** bf16 copies of the GEMM inputs (null unless the backend uses them), reused by backward. */
  copies: LayerCopies;
  /** Attention's shape (queryLen 1: [CLS] only); with `starts` it ran on the packed rows, otherwise on the padded layout. */
  attention: AttentionShape;
  q: FArray;
  k: FArray;
  v: FArray;
  probs: FArray;
  attnKeep: Uint8Array | null;
  ctx: FArray;
  drop1: DropoutCache;
  sum1: FArray;
  mean1: FArray;
  rstd1: FArray;
  h1: FArray;
  inter: FArray;
  act: FArray;
  drop2: DropoutCache;
  sum2: FArray;
  mean2: FArray;
  rstd2: FArray;
}

/** linearBack's variants: the backend's (LinearBackwardOptions), and `addTo`: add dx into this buffer (returned). */
type LinearBackOptions = Omit<LinearBackwardOptions, "overwriteGrads" | "accumulateDx"> & { addTo?: FArray | null };

interface LayerCopies {
  x: Bf16Copy | null;
  xq: Bf16Copy | null;
  attention: AttentionCopies | null;
  ctx: Bf16Copy | null;
  h1: Bf16Copy | null;
  /** The intermediate dense's output: with copies it exists in bf16 only, as under torch.autocast. */
  inter: Bf16Copy | null;
  act: Bf16Copy | null;
}

/** What backward needs from a forward pass. */
export interface ForwardCache {
  input: ModelInput;
  tokens: TokenRows;
  /** Lowest module depth that backward runs through (see ParamSpec.level). */
  minLevel: number;
  embeddings: EmbeddingCache | null;
  layers: (LayerCache | null)[];
  cls: FArray;
  pooled: FArray;
  /** The head's own cache (Head.forward). */
  head: unknown;
}

export interface ForwardResult {
  logits: FArray;
  pooled: FArray;
  hiddenStates?: FArray[];
  cache: ForwardCache | null;
}

export class TaskModel {
  readonly params: ParamStore;
  /** The encoder family (config.json's model_type): parameter names and which optional modules run. */
  readonly family: Family;
  private readonly embeddingNames: EmbeddingNames;
  private readonly projection: string | null;
  /** Per layer application, its parameters' names (ALBERT's layers share one group's). */
  private readonly layerNames: LayerNames[];
  /** The task head (heads/head.ts) and what the model lends it. */
  readonly head: Head;
  /** The family's pooler, when the head reads through it (first-token heads). */
  private readonly pooler: string | null;
  private readonly headContext: HeadContext;
  /** The token-type row of a family without token types (zeros, never trained). */
  private readonly zeroRow: FArray;
  /** Per parameter (same order as params.specs): does it train? */
  readonly trainable: boolean[];
  /** Per parameter: does a linear layer's backward produce its gradient (weights and biases of Linear modules)? */
  private readonly isLinearParam: boolean[];
  /**
   * Per parameter: has no gradient been accumulated in it since zeroGrad()? zeroGrad() leaves the gradients of
   * linear layers stale instead of zeroing them (a quarter of a BERT-base step's memory traffic outside GEMMs);
   * their backward then writes instead of adding.
   */
  private readonly gradStale: boolean[];
  hiddenDropout: number;
  attentionDropout: number;
  classifierDropout: number;
  /** Leave the padding rows of right-padded batches out (see the header); false runs every row, as HF does. */
  packTokens = true;
  /** Buffers of the current pass; reset at every forward, so a forward's cache lives until the next. */
  private readonly arena: Arena;
  /**
   * Two ping-pong arenas for modules whose activations are not kept (inference, frozen lower layers) and for each
   * layer's backward: module i writes into scratch[i % 2] while reading its input from the other, so memory stays at
   * about two layers.
   */
  private readonly scratch: [Arena, Arena];
  /** Where alloc() takes buffers from right now. */
  private current: Arena;
  /** Where allocTemp() takes buffers that only the forward of the current module reads: its scratch arena. */
  private temp: Arena;

  constructor(readonly config: BertConfig, readonly backend: Backend, readonly dtype: DType = "float32", readonly task: Task = "text-classification") {
    const advise = (buffer: ArrayBuffer): void => backend.adviseHugePages?.(buffer);
    this.arena = new Arena(dtype, advise);
    this.scratch = [new Arena(dtype, advise), new Arena(dtype, advise)];
    this.current = this.temp = this.arena;
    if (dtype === "float64" && !backend.supportsFloat64) throw new Error(`backend ${backend.name} has no float64`);
    this.family = familyOfConfig(config);
    this.head = headFor(task, this.family, config);
    this.pooler = this.head.reads === "first" ? this.family.pooler : null;
    this.params = new ParamStore(paramLayout(config, this.head), dtype, advise);
    this.embeddingNames = this.family.embeddings(config);
    this.projection = this.family.projection(config);
    const groups = config.num_hidden_groups || config.num_hidden_layers;
    const perGroup = config.num_hidden_layers / groups;
    this.layerNames = Array.from({ length: config.num_hidden_layers }, (_, l) => this.family.layer(Math.floor(l / perGroup)));
    this.zeroRow = allocFloat(dtype, config.embedding_size);
    this.headContext = {
      backend, config,
      alloc: (n) => this.alloc(n),
      fresh: (n) => this.fresh(n),
      linear: (prefix, x, rows, inF, outF, y) => this.linear(prefix, x, rows, inF, outF, null, y ?? this.alloc(rows * outF)),
      linearBack: (prefix, dy, x, rows, inF, outF, needDx) => this.linearBack(prefix, dy, x, rows, inF, outF, needDx),
      dropout: (x, p, n, stream, save) => this.dropout(x, p, n, stream, save),
      dropoutBack: (dy, c, n) => this.dropoutBack(dy, c, n),
      isTrainable: (name) => this.isTrainable(name),
    };
    this.trainable = this.params.specs.map(() => true);
    this.isLinearParam = this.params.specs.map((s) => s.kind === "linear");
    this.gradStale = this.params.specs.map(() => false);
    this.hiddenDropout = config.hidden_dropout_prob;
    this.attentionDropout = config.attention_probs_dropout_prob;
    this.classifierDropout = config.classifier_dropout ?? config.hidden_dropout_prob;
  }

  get numLayers(): number {
    return this.config.num_hidden_layers;
  }

  /** Override every dropout probability (the CLI's --dropout; 0 makes training deterministic). */
  setDropout(p: number): void {
    this.hiddenDropout = this.attentionDropout = this.classifierDropout = p;
  }

  /** Mark which parameters train. */
  setTrainable(predicate: (spec: ParamSpec) => boolean): void {
    this.params.specs.forEach((s, i) => (this.trainable[i] = predicate(s)));
  }

  isTrainable(name: string): boolean {
    return this.trainable[this.params.spec(name).index]!;
  }

  /** Lowest module depth holding a trainable parameter (L+3 when nothing trains). */
  lowestTrainableLevel(): number {
    let min = this.numLayers + 3;
    this.params.specs.forEach((s, i) => {
      if (this.trainable[i] && s.level < min) min = s.level;
    });
    return min;
  }

  /**
   * Start a new pass: scratch buffers of the previous pass (and so its ForwardCache) are reused from here on.
   * encode()/forward() call it; call it yourself before a classify() that is not preceded by encode().
   */
  beginPass(): void {
    for (const a of [this.arena, ...this.scratch]) a.reset();
    this.current = this.temp = this.arena;
  }

  /**
   * Allocate module `index`'s buffers from the pass arena when they are kept for backward, else from scratch;
   * buffers only its forward reads always come from scratch.
   */
  private useArenaFor(index: number, save: boolean): void {
    this.temp = this.scratch[index & 1]!;
    this.temp.reset();
    this.current = save ? this.arena : this.temp;
  }

  /** Scratch buffer from the arena (stale contents: overwrite it fully). */
  private alloc(n: number): FArray {
    return this.current.float(n);
  }

  /** A buffer that only the current module's forward reads (backward never does), from its scratch arena. */
  private allocTemp(n: number): FArray {
    return this.temp.float(n);
  }

  /** An empty bf16 copy for a GEMM input of n elements, when the backend uses them. */
  private copyFor(n: number): Bf16Copy | null {
    return this.backend.usesBf16Copies ? { data: this.current.u16(n), ready: false } : null;
  }

  /** A fresh buffer for results that outlive the pass (logits, pooled output, returned hidden states). */
  private fresh(n: number): FArray {
    return allocFloat(this.dtype, n);
  }

  private w(name: string): FArray {
    return this.params.value(name);
  }

  /** The gradient buffer of a parameter, or null when it is frozen (so no weight gradient is computed). */
  private g(name: string): FArray | null {
    const spec = this.params.spec(name);
    return this.trainable[spec.index] ? this.params.gradOf(name) : null;
  }

  private dropout(x: FArray, p: number, n: number, stream: DropoutStream | null, save: boolean): { y: FArray; cache: DropoutCache } {
    if (!stream || p === 0) return { y: x, cache: { keep: null, p: 0 } };
    const y = this.alloc(n);
    const keep = this.current.byte(n);
    this.backend.dropoutForward(x, y, keep, n, stream.next(p, n));
    return { y, cache: { keep: save ? keep : null, p } };
  }

  /** sum = dropout(x) + residual, y = LayerNorm(sum) in one backend pass; y's bf16 copy filled when given. */
  private dropoutAddLayerNorm(prefix: string, x: FArray, residual: FArray, rows: number, cols: number, stream: DropoutStream | null, save: boolean, y: FArray, yCopy: Bf16Copy | null): { y: FArray; sum: FArray; mean: FArray; rstd: FArray; drop: DropoutCache } {
    const n = rows * cols;
    const p = this.hiddenDropout;
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

  private dropoutBack(dy: FArray, c: DropoutCache, n: number): FArray {
    if (!c.keep) return dy;
    const dx = this.alloc(n);
    this.backend.dropoutBackward(dy, dx, c.keep, n, c.p);
    return dx;
  }

  // ---------------------------------------------------------------- embeddings

  /**
   * Embeddings: LN(word[ids] + position[pos] + token_type[tt] (+ ERNIE's task type 0)) → dropout, embedding_size
   * wide, then the family's projection to hidden_size where it has one (ELECTRA, ALBERT).
   */
  private embeddingsForward(input: ModelInput, tokens: TokenRows, stream: DropoutStream | null, save: boolean): { out: FArray; cache: EmbeddingCache | null } {
    const T = input.seqLen;
    const E = this.config.embedding_size;
    const { rows, starts, lengths } = tokens;
    const names = this.embeddingNames;
    const packed = (a: Int32Array): Int32Array => (tokens.packed ? this.toPacked(a, new Int32Array(rows), 1, tokens, T) : a);
    const ids = packed(input.inputIds);
    // DistilBERT has no token types: its rows read a zero row instead of a table
    const typeIds = names.tokenType ? packed(input.tokenTypeIds) : new Int32Array(rows);
    const posIds = new Int32Array(rows);
    const pad = this.config.pad_token_id;
    starts.forEach((start, b) => {
      if (this.family.positions === "absolute") {
        for (let t = 0; t < lengths[b]!; t++) posIds[start + t] = t;
        return;
      }
      // RoBERTa's create_position_ids_from_input_ids: real tokens count up from padding_idx + 1, padding gets padding_idx
      for (let t = 0, seen = 0; t < lengths[b]!; t++) {
        const real = ids[start + t] !== pad;
        if (real) seen++;
        posIds[start + t] = real ? pad + seen : pad;
      }
    });
    this.checkIds(ids, typeIds, rows, T);
    const sum = this.alloc(rows * E);
    this.backend.embeddingForward(
      ids, posIds, typeIds,
      this.w(`${names.word}.weight`), this.w(`${names.position}.weight`), names.tokenType ? this.w(`${names.tokenType}.weight`) : this.zeroRow,
      sum, rows, E,
    );
    if (names.taskType) {
      // task_type_ids default to zeros (the tokenizer makes none): row 0 of the table is added to every row
      const task = this.w(`${names.taskType}.weight`);
      for (let r = 0; r < rows; r++) for (let j = 0; j < E; j++) sum[r * E + j]! += task[j]!;
    }
    const normed = this.alloc(rows * E);
    const mean = this.alloc(rows);
    const rstd = this.alloc(rows);
    this.backend.layerNormForward(sum, this.w(`${names.norm}.weight`), this.w(`${names.norm}.bias`), normed, mean, rstd, rows, E, this.config.layer_norm_eps);
    const { y, cache: drop } = this.dropout(normed, this.hiddenDropout, rows * E, stream, save);
    const out = this.projection ? this.linear(this.projection, y, rows, E, this.config.hidden_size) : y;
    return { out, cache: save ? { ids, posIds, typeIds, sum, mean, rstd, drop, projected: y } : null };
  }

  /** Every id must index its table: a tokenizer larger than config.json's vocab_size, or text pairs with a
   *  type_vocab_size of 1, are the user's error to fix, named here once per batch before any gather. */
  private checkIds(ids: Int32Array, typeIds: Int32Array, rows: number, seqLen: number): void {
    const c = this.config;
    const maxLength = maxSequenceLength(c);
    if (seqLen > maxLength) {
      throw new WeitiaoError(`sequence length ${seqLen} is beyond the ${maxLength} positions max_position_embeddings ${c.max_position_embeddings} in config.json allows (lower --max-length)`);
    }
    const types = this.embeddingNames.tokenType ? c.type_vocab_size : 1;
    for (let r = 0; r < rows; r++) {
      const id = ids[r]!;
      if (!(id >= 0 && id < c.vocab_size)) {
        throw new WeitiaoError(`token id ${id} is beyond the word embedding table (vocab_size ${c.vocab_size} in config.json): the tokenizer does not match the model`);
      }
      const t = typeIds[r]!;
      if (!(t >= 0 && t < types)) {
        throw new WeitiaoError(`token type id ${t} is beyond the token type table (type_vocab_size ${c.type_vocab_size} in config.json)${t === 1 ? ": this model cannot take text pairs" : ""}`);
      }
    }
  }

  private embeddingsBackward(dOut: FArray, c: EmbeddingCache): void {
    const E = this.config.embedding_size;
    const rows = c.ids.length;
    const names = this.embeddingNames;
    const dy = this.projection ? this.linearBack(this.projection, dOut, c.projected, rows, E, this.config.hidden_size, true)! : dOut;
    const dNormed = this.dropoutBack(dy, c.drop, rows * E);
    const dSum = this.alloc(rows * E);
    this.backend.layerNormBackward(dNormed, c.sum, c.mean, c.rstd, this.w(`${names.norm}.weight`), dSum, this.g(`${names.norm}.weight`), this.g(`${names.norm}.bias`), rows, E);
    const pad = this.config.pad_token_id;
    const gw = this.g(`${names.word}.weight`);
    if (gw) this.backend.embeddingBackward(c.ids, dSum, gw, rows, E, pad);
    // RoBERTa's position table has padding_idx too
    const gp = this.g(`${names.position}.weight`);
    if (gp) this.backend.embeddingBackward(c.posIds, dSum, gp, rows, E, this.family.positions === "after-padding" ? pad : -1);
    const gt = names.tokenType ? this.g(`${names.tokenType}.weight`) : null;
    if (gt) this.backend.embeddingBackward(c.typeIds, dSum, gt, rows, E, -1);
    const gTask = names.taskType ? this.g(`${names.taskType}.weight`) : null;
    if (gTask) this.backend.embeddingBackward(new Int32Array(rows), dSum, gTask, rows, E, -1);
  }

  // ---------------------------------------------------------------- encoder layer

  /** With `yCopy`, the backend writes only y's bf16 copy (see Backend.linearForward). */
  private linear(prefix: string, x: FArray, rows: number, inF: number, outF: number, xCopy: Bf16Copy | null = null, y = this.alloc(rows * outF), yCopy: Bf16Copy | null = null): FArray {
    this.backend.linearForward(x, this.w(`${prefix}.weight`), this.w(`${prefix}.bias`), y, rows, inF, outF, xCopy, yCopy);
    return y;
  }

  /** Returns dx (or null when not needed); accumulates weight gradients of trainable weights. See LinearBackOptions. */
  private linearBack(prefix: string, dy: FArray, x: FArray, rows: number, inF: number, outF: number, needDx: boolean, opts: LinearBackOptions = {}): FArray | null {
    const { addTo = null, ...backendOpts } = opts;
    const dx = needDx ? addTo ?? this.alloc(rows * inF) : null;
    const wi = this.params.spec(`${prefix}.weight`).index;
    const bi = this.params.spec(`${prefix}.bias`).index;
    const overwrite = this.gradStale[wi]!;
    this.gradStale[wi] = this.gradStale[bi] = false;
    this.backend.linearBackward(dy, x, this.w(`${prefix}.weight`), dx, this.g(`${prefix}.weight`), this.g(`${prefix}.bias`), rows, inF, outF,
      { ...backendOpts, overwriteGrads: overwrite, accumulateDx: addTo !== null });
    return dx;
  }

  private layerNormBack(prefix: string, dy: FArray, x: FArray, mean: FArray, rstd: FArray, rows: number, cols: number): FArray {
    const dx = this.alloc(rows * cols);
    this.backend.layerNormBackward(dy, x, mean, rstd, this.w(`${prefix}.weight`), dx, this.g(`${prefix}.weight`), this.g(`${prefix}.bias`), rows, cols);
    return dx;
  }

  /**
   * Attention's shape and key mask for a pass's layers: every row a query, or [CLS] only (`clsOnly`). A packed batch
   * whose every row is a query tells attention each sequence's length (it may skip the padding) and, where the
   * backend takes them, the packed rows' starts (no move to the padded layout). A backend may take packed rows only at
   * lengths that are multiples of its packedLengthMultiple (the native bf16 kernels' tile of 16); as packed rows do not
   * depend on the padded length, such a backend gets one rounded up (its extra keys masked) rather than the moves.
   */
  private attentionPlan(input: ModelInput, tokens: TokenRows, keyMask: Float32Array, clsOnly: boolean): AttentionPlan {
    const { batch: B, seqLen: T } = input;
    const heads = this.config.num_attention_heads;
    const shape: AttentionShape = { batch: B, seqLen: T, heads, headDim: this.config.hidden_size / heads, queryLen: clsOnly ? 1 : T };
    if (!tokens.packed || clsOnly) return { shape, keyMask };
    const packed = { lengths: tokens.lengths, starts: tokens.starts };
    if (this.backend.packedAttention?.({ ...shape, ...packed })) return { shape: { ...shape, ...packed }, keyMask };
    const multiple = this.backend.packedLengthMultiple;
    const Tr = Math.ceil(T / multiple) * multiple;
    const rounded: AttentionShape = { ...shape, seqLen: Tr, queryLen: Tr, ...packed };
    if (Tr !== T && this.backend.packedAttention?.(rounded)) {
      const mask = new Float32Array(B * Tr).fill(-Infinity);
      for (let b = 0; b < B; b++) mask.set(keyMask.subarray(b * T, b * T + T), b * Tr);
      return { shape: rounded, keyMask: mask };
    }
    return { shape: { ...shape, lengths: tokens.lengths }, keyMask };
  }

  /** The first row of every sequence in x (its [CLS] token): [B, H]. */
  private clsRows(x: FArray, tokens: TokenRows): FArray {
    const H = this.config.hidden_size;
    const out = this.alloc(tokens.starts.length * H);
    tokens.starts.forEach((start, b) => out.set(x.subarray(start * H, start * H + H), b * H));
    return out;
  }

  /**
   * Which rows the modules run on: packed when `packTokens` is on and the batch is right-padded (every mask a run of
   * at least one 1, then 0s) with padding to leave out, else the padded layout. A packed batch keeps a multiple of the
   * backend's rowCountMultiple rows, the last sequences keeping some of their padding rows: the native backend builds
   * GEMM kernels per row count, and real token counts would make nearly every batch a new one.
   */
  private tokenRows(input: ModelInput): TokenRows {
    const { batch: B, seqLen: T, attentionMask: mask } = input;
    const lengths = new Int32Array(B).fill(T);
    let rightPadded = true;
    for (let b = 0; b < B && rightPadded; b++) {
      let n = 0;
      while (n < T && mask[b * T + n]) n++;
      for (let t = n; t < T && rightPadded; t++) rightPadded = !mask[b * T + t];
      rightPadded &&= n > 0;
      lengths[b] = n;
    }
    const real = lengths.reduce((sum, n) => sum + n, 0);
    const multiple = this.backend.rowCountMultiple;
    const rows = Math.ceil(real / multiple) * multiple;
    const packed = this.packTokens && rightPadded && rows < B * T;
    if (!packed) lengths.fill(T);
    for (let b = B - 1, extra = rows - real; packed && extra > 0; b--) {
      // padding rows kept are computed as in the padded layout (and, like them, never read by a real token)
      const kept = Math.min(extra, T - lengths[b]!);
      lengths[b] += kept;
      extra -= kept;
    }
    const starts = new Int32Array(B);
    for (let b = 1; b < B; b++) starts[b] = starts[b - 1]! + lengths[b - 1]!;
    return { rows: packed ? rows : B * T, starts, lengths, packed };
  }

  /** src's rows (packed, `width` values each) into the padded layout dst [B·T, width], padding rows zeroed. */
  private toPadded<A extends RowArray>(src: A, dst: A, width: number, tokens: TokenRows, T: number): A {
    tokens.starts.forEach((start, b) => {
      const n = tokens.lengths[b]!;
      dst.set(src.subarray(start * width, (start + n) * width), b * T * width);
      dst.fill(0, (b * T + n) * width, (b + 1) * T * width);
    });
    return dst;
  }

  /** The real tokens' rows of the padded src [B·T, width] into packed dst. */
  private toPacked<A extends RowArray>(src: A, dst: A, width: number, tokens: TokenRows, T: number): A {
    tokens.starts.forEach((start, b) => dst.set(src.subarray(b * T * width, (b * T + tokens.lengths[b]!) * width), start * width));
    return dst;
  }

  /**
   * One encoder layer over the token rows x (see TokenRows). With [CLS]-only attention (plan.shape.queryLen 1) the
   * output holds only the [CLS] rows ([B, H]): keys and values still come from every token, everything else runs on
   * the B query rows.
   */
  private layerForward(l: number, x: FArray, input: ModelInput, tokens: TokenRows, plan: AttentionPlan, stream: DropoutStream | null, save: boolean): { out: FArray; cache: LayerCache | null } {
    const H = this.config.hidden_size;
    const I = this.config.intermediate_size;
    const { batch: B, seqLen: T } = input;
    const shape = plan.shape;
    const clsOnly = shape.queryLen === 1;
    const kvRows = tokens.rows;
    const rows = clsOnly ? B : tokens.rows;
    const n = this.layerNames[l]!;
    // A packed batch's attention runs on the packed rows where the backend takes them (see attentionPlan); otherwise
    // on the padded layout: keys and values are moved there, and so are queries and the context unless they are the
    // [CLS] rows alone (the same in both layouts).
    const moveKeys = tokens.packed && !shape.starts;
    const moveQuery = moveKeys && !clsOnly;
    // rows of k and v, and of q and the context, as attention reads and writes them; its probabilities [B, heads, Tq, T]
    const kvLayoutRows = moveKeys ? B * T : kvRows;
    const qLayoutRows = moveQuery ? B * T : rows;
    const nProbs = B * shape.heads * shape.queryLen! * shape.seqLen;
    const erfGelu = this.config.hidden_act === "gelu";

    // bf16 copies of every GEMM input (when the backend uses them): each is converted once, at its first use
    const xCopy = this.copyFor(kvRows * H);
    // With copies, backward reads GEMM inputs only through them: the fp32 tensors are forward-only scratch, and q,
    // k, v, ctx and act (read by nothing but bf16 GEMMs) are produced as copies only.
    const gemmInput = (n: number): FArray => (xCopy ? this.allocTemp(n) : this.alloc(n));
    const tempCopy = (n: number): Bf16Copy | null => (xCopy ? { data: this.temp.u16(n), ready: false } : null);
    const ctxCopy = this.copyFor(rows * H);
    const attention: AttentionCopies | null = xCopy
      ? {
          q: this.copyFor(qLayoutRows * H)!, k: this.copyFor(kvLayoutRows * H)!, v: this.copyFor(kvLayoutRows * H)!,
          p: save ? this.copyFor(nProbs)! : undefined, ctx: moveQuery ? tempCopy(qLayoutRows * H)! : ctxCopy!,
        }
      : null;
    const copies: LayerCopies = {
      x: xCopy,
      xq: clsOnly ? this.copyFor(rows * H) : xCopy,
      attention,
      ctx: ctxCopy,
      h1: this.copyFor(rows * H),
      // the erf GELU's fused kernels take bf16 copies; gelu_new (ALBERT) runs on fp32 tensors kept for backward
      inter: erfGelu ? this.copyFor(rows * I) : null,
      act: erfGelu ? this.copyFor(rows * I) : null,
    };

    // self-attention; a projection whose output attention reads padded is computed packed into scratch, then moved
    const project = (name: string, input: FArray, inRows: number, inCopy: Bf16Copy | null, padded: boolean, yCopy: Bf16Copy | undefined): FArray => {
      if (!padded) return this.linear(name, input, inRows, H, H, inCopy, gemmInput(inRows * H), yCopy);
      const packedCopy = tempCopy(inRows * H);
      const y = this.linear(name, input, inRows, H, H, inCopy, this.allocTemp(inRows * H), packedCopy);
      const out = gemmInput(B * T * H); // with copies only a placeholder: attention reads yCopy
      if (packedCopy && yCopy) {
        this.toPadded(packedCopy.data, yCopy.data, H, tokens, T);
        yCopy.ready = true;
      } else {
        this.toPadded(y, out, H, tokens, T);
      }
      return out;
    };
    const xq = clsOnly ? this.clsRows(x, tokens) : x;
    const q = project(n.query, xq, rows, copies.xq, moveQuery, attention?.q);
    const k = project(n.key, x, kvRows, copies.x, moveKeys, attention?.k);
    const v = project(n.value, x, kvRows, copies.x, moveKeys, attention?.v);
    // probabilities and dropout mask are kept for backward only (without, the backend may hold them in scratch)
    const probs = save ? this.alloc(nProbs) : null;
    const paddedCtx = moveQuery ? this.allocTemp(B * T * H) : gemmInput(rows * H);
    const attnDrop = stream && this.attentionDropout > 0 ? stream.next(this.attentionDropout, nProbs) : null;
    const attnKeep = attnDrop && save ? this.current.byte(nProbs) : null;
    this.backend.attentionForward({ q, k, v, keyMask: plan.keyMask, shape, probs, ctx: paddedCtx, dropout: attnDrop, keep: attnKeep, copies: copies.attention });
    let ctx = paddedCtx;
    if (moveQuery) {
      ctx = gemmInput(rows * H);
      if (attention && ctxCopy) {
        this.toPacked(attention.ctx!.data, ctxCopy.data, H, tokens, T);
        ctxCopy.ready = true;
      } else {
        this.toPacked(paddedCtx, ctx, H, tokens, T);
      }
    }

    // attention output: dense → dropout → residual → LayerNorm
    const attnOut = this.linear(n.attentionOutput, ctx, rows, H, H, copies.ctx, this.allocTemp(rows * H));
    const ln1 = this.dropoutAddLayerNorm(n.attentionNorm, attnOut, xq, rows, H, stream, save, gemmInput(rows * H), copies.h1);

    // feed-forward: dense → GELU → dense → dropout → residual → LayerNorm
    const ffnBuffer = (n: number): FArray => (erfGelu ? gemmInput(n) : this.alloc(n));
    const inter = this.linear(n.intermediate, ln1.y, rows, H, I, copies.h1, ffnBuffer(rows * I), copies.inter);
    const act = ffnBuffer(rows * I);
    if (erfGelu) this.backend.geluForward(inter, act, rows * I, copies.act, copies.inter); // with copies, only bf16 copies are written
    else this.backend.activationForward("gelu_new", inter, act, rows * I);
    const ffnOut = this.linear(n.output, act, rows, I, H, copies.act, this.allocTemp(rows * H));
    const ln2 = this.dropoutAddLayerNorm(n.outputNorm, ffnOut, ln1.y, rows, H, stream, save, gemmInput(rows * H), null); // the next layer's x

    const cache: LayerCache | null = save
      ? {
          x, xq, copies, attention: shape, q, k, v, probs: probs!, attnKeep, ctx, drop1: ln1.drop, sum1: ln1.sum, mean1: ln1.mean, rstd1: ln1.rstd, h1: ln1.y,
          inter, act, drop2: ln2.drop, sum2: ln2.sum, mean2: ln2.mean, rstd2: ln2.rstd,
        }
      : null;
    return { out: ln2.y, cache };
  }

  /** Backward through one layer (dOut has the rows its forward produced); returns d(input) when `needDx`. */
  private layerBackward(l: number, dOut: FArray, c: LayerCache, input: ModelInput, tokens: TokenRows, needDx: boolean): FArray | null {
    const H = this.config.hidden_size;
    const I = this.config.intermediate_size;
    const { batch: B, seqLen: T } = input;
    const fullQuery = c.attention.queryLen !== 1;
    const rows = fullQuery ? tokens.rows : B;
    const kvRows = tokens.rows;
    const moveKeys = tokens.packed && !c.attention.starts; // as in layerForward
    const moveQuery = moveKeys && fullQuery;
    const names = this.layerNames[l]!;
    const n = rows * H;

    const dSum2 = this.layerNormBack(names.outputNorm, dOut, c.sum2, c.mean2, c.rstd2, rows, H);
    const dFfnOut = this.dropoutBack(dSum2, c.drop2, n);
    // with copies, dAct (like inter) exists in bf16 only, as under torch.autocast
    const dActCopy = c.copies.inter ? this.copyFor(rows * I) : null;
    const dAct = this.linearBack(names.output, dFfnOut, c.act, rows, I, H, true, { xCopy: c.copies.act, dxCopy: dActCopy })!;
    // GELU's backward runs inside the intermediate dense's (dInter = dAct·gelu'(inter) is never stored). Its input
    // gradient is added onto the residual branch's, dSum2, in place: nothing reads dSum2 (or dFfnOut, which may be
    // the same buffer) after the output dense's backward.
    let dH1: FArray;
    if (this.config.hidden_act === "gelu") {
      dH1 = this.linearBack(names.intermediate, dAct, c.h1, rows, H, I, true,
        { xCopy: c.copies.h1, geluInput: c.inter, addTo: dSum2, dyCopy: dActCopy, geluInputCopy: c.copies.inter })!;
    } else {
      const dInter = this.alloc(rows * I);
      this.backend.activationBackward("gelu_new", c.inter, dAct, dInter, rows * I);
      dH1 = this.linearBack(names.intermediate, dInter, c.h1, rows, H, I, true, { xCopy: c.copies.h1, addTo: dSum2 })!;
    }

    const dSum1 = this.layerNormBack(names.attentionNorm, dH1, c.sum1, c.mean1, c.rstd1, rows, H);
    const dAttnOut = this.dropoutBack(dSum1, c.drop1, n);
    // dctx is read by attention's bf16 products only: with copies it is produced in bf16 alone
    const attention = c.copies.attention && { ...c.copies.attention, dctx: this.copyFor(n)! };
    let dCtx = this.linearBack(names.attentionOutput, dAttnOut, c.ctx, rows, H, H, true, { xCopy: c.copies.ctx, dxCopy: attention?.dctx })!;
    if (moveQuery) {
      if (attention) {
        attention.dctx = { data: this.toPadded(attention.dctx.data, this.current.u16(B * T * H), H, tokens, T), ready: true };
      } else {
        dCtx = this.toPadded(dCtx, this.alloc(B * T * H), H, tokens, T);
      }
    }

    const kvLayoutRows = moveKeys ? B * T : kvRows;
    const dq = this.alloc((moveQuery ? B * T : rows) * H);
    const dk = this.alloc(kvLayoutRows * H);
    const dv = this.alloc(kvLayoutRows * H);
    this.backend.attentionBackward({
      q: c.q, k: c.k, v: c.v, probs: c.probs, keep: c.attnKeep, dropoutP: this.attentionDropout, dctx: dCtx, shape: c.attention, dq, dk, dv,
      copies: attention,
    });
    const packed = (d: FArray, moved: boolean, size: number): FArray => (moved ? this.toPacked(d, this.alloc(size), H, tokens, T) : d);
    // K, V (and Q, when it has every row) add their input gradients onto the residual branch's, dSum1, in place (as
    // for dSum2 above) as the products are stored
    const dx = this.linearBack(names.key, packed(dk, moveKeys, kvRows * H), c.x, kvRows, H, H, needDx, { xCopy: c.copies.x, addTo: fullQuery ? dSum1 : null });
    // The key bias's gradient is exactly zero (softmax ignores a per-query constant); what a float GEMM computes is
    // rounding noise (~1e-10), which Adam's eps of 1e-8 turns into random steps of up to ~5% of the lr. PyTorch keeps
    // that noise; we keep the exact value, so the key bias stays where the checkpoint put it.
    this.g(`${names.key}.bias`)?.fill(0);
    this.linearBack(names.value, packed(dv, moveKeys, kvRows * H), c.x, kvRows, H, H, needDx, { xCopy: c.copies.x, addTo: dx });
    const dxq = this.linearBack(names.query, packed(dq, moveQuery, n), c.xq, rows, H, H, needDx, { xCopy: c.copies.xq, addTo: fullQuery ? dx : null });
    if (!dx || !dxq) return null;
    if (!fullQuery) {
      // [CLS]-only layer: the query rows' gradient and the residual go back to each sequence's first row
      this.backend.add(dxq, dSum1, dxq, n);
      tokens.starts.forEach((start, b) => {
        const row = dx.subarray(start * H, start * H + H);
        this.backend.add(row, dxq.subarray(b * H, b * H + H), row, H);
      });
    }
    return dx;
  }

  // ---------------------------------------------------------------- encoder + pooler

  /**
   * Runs embeddings, encoder and pooler. In train mode saves what backward needs for the modules at or above
   * the lowest trainable level.
   */
  encode(input: ModelInput, opts: ForwardOptions): { pooled: FArray; hiddenStates?: FArray[]; partial: Omit<ForwardCache, "head"> | null } {
    const { batch: B, seqLen: T } = input;
    const H = this.config.hidden_size;
    const L = this.numLayers;
    const rows = B * T;
    if (input.inputIds.length !== rows || input.attentionMask.length !== rows || input.tokenTypeIds.length !== rows) {
      throw new Error(`input arrays must hold batch·seqLen = ${rows} entries`);
    }
    this.beginPass();
    const save = opts.train;
    const minLevel = save ? this.lowestTrainableLevel() : L + 3;
    const stream = opts.train ? new DropoutStream(opts.dropoutSeed ?? 0) : null;
    const keyMask = new Float32Array(rows);
    for (let r = 0; r < rows; r++) keyMask[r] = input.attentionMask[r] ? 0 : -Infinity;

    const tokens = this.tokenRows(input);
    const fullAttention = this.attentionPlan(input, tokens, keyMask, false);

    this.useArenaFor(1, save && minLevel <= 0); // embeddings: scratch[1], then layer l uses scratch[l % 2]
    const emb = this.embeddingsForward(input, tokens, stream, save && minLevel <= 0);
    // hidden states are returned in the padded layout (padding rows left out of a packed batch are 0)
    const keepHidden = (h: FArray): FArray => {
      const c = this.fresh(rows * H);
      if (tokens.packed) return this.toPadded(h, c, H, tokens, T);
      c.set(h);
      return c;
    };
    const hidden: FArray[] | undefined = opts.outputHiddenStates ? [keepHidden(emb.out)] : undefined;
    let x = emb.out;
    const layers: (LayerCache | null)[] = [];
    for (let l = 0; l < L; l++) {
      this.useArenaFor(l, save && minLevel <= l + 1);
      const clsOnly = l === L - 1 && !hidden && this.head.reads === "first"; // the head reads only the last layer's [CLS] rows
      const plan = clsOnly ? this.attentionPlan(input, tokens, keyMask, true) : fullAttention;
      const r = this.layerForward(l, x, input, tokens, plan, stream, save && minLevel <= l + 1);
      layers.push(r.cache);
      x = r.out;
      hidden?.push(keepHidden(x));
    }
    this.current = this.arena;
    if (this.head.reads === "tokens") {
      // Every token's state, in the padded layout the labels share (padding rows 0)
      const features = this.fresh(rows * H);
      if (tokens.packed) this.toPadded(x, features, H, tokens, T);
      else features.set(x);
      return { pooled: features, hiddenStates: hidden, partial: save ? { input, tokens, minLevel, embeddings: emb.cache, layers, cls: features, pooled: features } : null };
    }
    // pooler: tanh(W · h[:, 0]); its input is kept for backward in the pass arena (x may be layer scratch)
    let cls: FArray;
    if (L > 0 && !hidden) {
      cls = this.alloc(B * H); // the [CLS]-only last layer's whole output
      cls.set(x);
    } else {
      cls = this.clsRows(x, tokens);
    }
    // The head's features: the pooler's tanh(W · h[:, 0]), or h[:, 0] itself in families without a pooler
    const pooled = this.fresh(B * H);
    if (this.pooler) this.backend.tanhForward(this.linear(this.pooler, cls, B, H, H), pooled, B * H);
    else pooled.set(cls);
    return {
      pooled,
      hiddenStates: hidden,
      partial: save ? { input, tokens, minLevel, embeddings: emb.cache, layers, cls, pooled } : null,
    };
  }

  // ---------------------------------------------------------------- head

  /**
   * logits from the features (see encode) through the task head. Its dropout stream is separate from the encoder's
   * so cached-feature training draws the same masks.
   */
  classify(pooled: FArray, rows: number, train: boolean, dropoutSeed = 0): { logits: FArray; cache: unknown } {
    const stream = train ? new DropoutStream((dropoutSeed ^ 0x5bd1e995) >>> 0) : null;
    return this.head.forward(this.headContext, pooled, rows, stream, this.classifierDropout);
  }

  /** Backward through the head; returns d(features) when needed below. */
  classifyBackward(dLogits: FArray, cache: unknown, needDx: boolean): FArray | null {
    return this.head.backward(this.headContext, dLogits, cache, needDx);
  }

  // ---------------------------------------------------------------- whole model

  forward(input: ModelInput, opts: ForwardOptions): ForwardResult {
    const enc = this.encode(input, opts);
    const rows = this.head.reads === "tokens" ? input.batch * input.seqLen : input.batch;
    const head = this.classify(enc.pooled, rows, opts.train, opts.dropoutSeed ?? 0);
    return {
      logits: head.logits,
      pooled: enc.pooled,
      hiddenStates: enc.hiddenStates,
      cache: enc.partial ? { ...enc.partial, head: head.cache } : null,
    };
  }

  /** Accumulates parameter gradients (into params.grad) of the loss whose gradient w.r.t. the logits is dLogits. */
  backward(cache: ForwardCache, dLogits: FArray): void {
    const { input, tokens, minLevel } = cache;
    const B = input.batch;
    const H = this.config.hidden_size;
    const L = this.numLayers;
    let dx: FArray;
    if (this.head.reads === "tokens") {
      const dFeatures = this.classifyBackward(dLogits, cache.head, minLevel <= L);
      if (!dFeatures) return;
      dx = tokens.packed ? this.toPacked(dFeatures, this.arena.float(tokens.rows * H), H, tokens, input.seqLen) : dFeatures;
      this.backwardLayers(cache, dx);
      return;
    }
    const dPooled = this.classifyBackward(dLogits, cache.head, minLevel <= L + 1);
    if (!dPooled) return;
    let dCls: FArray | null = minLevel <= L ? dPooled : null;
    if (this.pooler) {
      const dPre = this.alloc(B * H);
      this.backend.tanhBackward(cache.pooled, dPooled, dPre, B * H);
      dCls = this.linearBack(this.pooler, dPre, cache.cls, B, H, H, minLevel <= L);
    }
    if (!dCls) return;
    if (L > 0 && cache.layers[L - 1]!.attention.queryLen === 1) {
      dx = dCls; // the last layer produced only the [CLS] rows
    } else {
      dx = this.arena.zeros(tokens.rows * H); // only the [CLS] rows carry gradient from the pooler
      tokens.starts.forEach((start, b) => dx.set(dCls.subarray(b * H, b * H + H), start * H));
    }
    this.backwardLayers(cache, dx);
  }

  /** Backward from the last layer's output gradient dx (the rows it ran on) down to the lowest trainable module. */
  private backwardLayers(cache: ForwardCache, dx: FArray): void {
    const { input, tokens, minLevel } = cache;
    const L = this.numLayers;
    // A layer's backward buffers are needed only until the layer below has read its dx: they come from the
    // ping-pong scratch arenas (layer l's from scratch[l % 2], embeddings' from scratch[1]), as in forward, instead of
    // piling up in the pass arena (in a bf16 BERT-base step they are more than the forward's activations).
    try {
      for (let l = L - 1; l >= 0 && minLevel <= l + 1; l--) {
        this.useArenaFor(l, false);
        const d = this.layerBackward(l, dx, cache.layers[l]!, input, tokens, minLevel <= l);
        if (!d) return;
        dx = d;
      }
      if (minLevel <= 0) {
        this.useArenaFor(1, false);
        this.embeddingsBackward(dx, cache.embeddings!);
      }
    } finally {
      this.current = this.temp = this.arena;
    }
  }

  /**
   * Start accumulating a new gradient. Gradients of linear layers are not zeroed but marked stale (their next
   * backward overwrites them), so read params.grad only after a backward.
   */
  zeroGrad(): void {
    this.params.specs.forEach((s, i) => {
      if (this.isLinearParam[i]) this.gradStale[i] = true;
      else this.params.grad.fill(0, s.offset, s.offset + s.size);
    });
  }
}
