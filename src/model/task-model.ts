/**
 * A task model: an encoder of any family (families/, chosen by config.json's model_type) and a task head (heads/,
 * chosen by the task), forward and backward side by side per module (in the spirit of llm.c and candle's bert.rs).
 * The modules live in modules/ (embeddings.ts, layer.ts, and rows.ts for the rows they run on), on the pass machinery of
 * pass.ts (arenas, Linear, LayerNorm's backward, dropout); this file wires them into the model.
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
import type { Backend, FArray } from "../backend/types.js";
import { type BertConfig, familyOfConfig } from "./config.js";
import type { EmbeddingNames, Family, LayerNames } from "./families/family.js";
import { DropoutStream } from "./dropout.js";
import type { Head, HeadContext } from "./heads/head.js";
import { headFor } from "./heads/index.js";
import type { Task } from "./task.js";
import { allocFloat, type DType, paramLayout, type ParamSpec, ParamStore } from "./params.js";
import { PassContext } from "./pass.js";
import { type LoraSpec, loraLayout } from "./lora.js";
import { type EmbeddingCache, embeddingsBackward, embeddingsForward } from "./modules/embeddings.js";
import { type LayerCache, layerBackward, layerForward } from "./modules/layer.js";
import { type AttentionPlan, attentionPlan, clsRows, type TokenRows, tokenRows, toPacked, toPadded } from "./modules/rows.js";

export interface ModelInput {
  /** [batch·seqLen] token ids. */
  inputIds: Int32Array;
  /** [batch·seqLen] 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** [batch·seqLen] segment ids (0 for the first text, 1 for the pair). */
  tokenTypeIds: Int32Array;
  batch: number;
  seqLen: number;
  /** The rows a "selected" head reads (masked LM): indices b·seqLen + t of real tokens, in the order of its logits. */
  selected?: Int32Array;
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

/** Where each of input.selected's tokens sits among the rows the layers ran on (packed or padded). */
function selectedRows(input: ModelInput, tokens: TokenRows): Int32Array {
  const sel = input.selected;
  if (!sel) throw new Error("a masked-LM head reads input.selected (the rows to predict)");
  const T = input.seqLen;
  return Int32Array.from(sel, (p) => {
    const b = Math.floor(p / T);
    const t = p - b * T;
    if (b >= input.batch || t < 0 || !input.attentionMask[p]) throw new Error(`selected row ${p} is not a real token`);
    return tokens.packed ? tokens.starts[b]! + t : p;
  });
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
  /** The pass machinery (pass.ts): arenas, parameter-level ops, gradient bookkeeping. */
  private readonly pass: PassContext;
  /** Per parameter (same order as params.specs): does it train? (The pass's array.) */
  readonly trainable: boolean[];
  hiddenDropout: number;
  attentionDropout: number;
  classifierDropout: number;
  /** Leave the padding rows of right-padded batches out (see the header); false runs every row, as HF does. */
  packTokens = true;
  /**
   * `lora`: LoRA adapters on some Linears (lora.ts); their matrices join the parameters as `<linear>.lora_A.weight`
   * and `.lora_B.weight`, which the model folder never holds (io/adapter.ts writes them in PEFT's layout).
   */
  constructor(readonly config: BertConfig, readonly backend: Backend, readonly dtype: DType = "float32", readonly task: Task = "text-classification", readonly lora: LoraSpec | null = null) {
    const advise = (buffer: ArrayBuffer): void => backend.adviseHugePages?.(buffer);
    if (dtype === "float64" && !backend.supportsFloat64) throw new Error(`backend ${backend.name} has no float64`);
    this.family = familyOfConfig(config);
    this.head = headFor(task, this.family, config);
    this.pooler = this.head.reads === "first" ? this.family.pooler : null;
    const layout = paramLayout(config, this.head);
    this.params = new ParamStore(lora ? loraLayout(layout, lora) : layout, dtype, advise);
    const pass = (this.pass = new PassContext(config, backend, dtype, this.params, lora));
    this.embeddingNames = this.family.embeddings(config);
    this.projection = this.family.projection(config);
    const groups = config.num_hidden_groups || config.num_hidden_layers;
    const perGroup = config.num_hidden_layers / groups;
    this.layerNames = Array.from({ length: config.num_hidden_layers }, (_, l) => this.family.layer(Math.floor(l / perGroup)));
    this.zeroRow = allocFloat(dtype, config.embedding_size);
    this.headContext = {
      backend, config,
      alloc: (n) => pass.alloc(n),
      fresh: (n) => pass.fresh(n),
      linear: (prefix, x, rows, inF, outF, y) => pass.linear(prefix, x, rows, inF, outF, null, y ?? pass.alloc(rows * outF)),
      linearBack: (prefix, dy, x, rows, inF, outF, needDx) => pass.linearBack(prefix, dy, x, rows, inF, outF, needDx),
      dropout: (x, p, n, stream, save) => pass.dropout(x, p, n, stream, save),
      dropoutBack: (dy, c, n) => pass.dropoutBack(dy, c, n),
      isTrainable: (name) => this.isTrainable(name),
      w: (name) => pass.w(name),
      g: (name) => pass.g(name),
    };
    this.trainable = pass.trainable;
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
    this.pass.beginPass();
  }

  /** Layer l's forward and backward (modules/layer.ts) on its parameters' names (family-mutations.test.ts wraps layerBackward). */
  private layerForward(l: number, x: FArray, input: ModelInput, tokens: TokenRows, plan: AttentionPlan, stream: DropoutStream | null, save: boolean): { out: FArray; cache: LayerCache | null } {
    return layerForward(this.pass, this.layerNames[l]!, x, input, tokens, plan, this.hiddenDropout, this.attentionDropout, stream, save);
  }

  private layerBackward(l: number, dOut: FArray, c: LayerCache, input: ModelInput, tokens: TokenRows, needDx: boolean): FArray | null {
    return layerBackward(this.pass, this.layerNames[l]!, dOut, c, input, tokens, this.attentionDropout, needDx);
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
    this.pass.training = save;
    this.pass.loraStream = stream;
    const keyMask = new Float32Array(rows);
    for (let r = 0; r < rows; r++) keyMask[r] = input.attentionMask[r] ? 0 : -Infinity;

    const tokens = tokenRows(this.backend, input, this.packTokens);
    const fullAttention = attentionPlan(this.backend, this.config, input, tokens, keyMask, false);

    // embeddings: scratch[1], then layer l uses scratch[l % 2]; their output stays in the pass arena when layer 0
    // trains, whose backward reads its input (layer 1's scratch would overwrite it)
    this.pass.useArenaFor(1, save && minLevel <= 1);
    const emb = embeddingsForward(this.pass, this.family, this.embeddingNames, this.projection, this.zeroRow, input, tokens, this.hiddenDropout, stream, save && minLevel <= 0);
    // hidden states are returned in the padded layout (padding rows left out of a packed batch are 0)
    const keepHidden = (h: FArray): FArray => {
      const c = this.pass.fresh(rows * H);
      if (tokens.packed) return toPadded(h, c, H, tokens, T);
      c.set(h);
      return c;
    };
    const hidden: FArray[] | undefined = opts.outputHiddenStates ? [keepHidden(emb.out)] : undefined;
    let x = emb.out;
    const layers: (LayerCache | null)[] = [];
    for (let l = 0; l < L; l++) {
      this.pass.useArenaFor(l, save && minLevel <= l + 1);
      const clsOnly = l === L - 1 && !hidden && this.head.reads === "first"; // the head reads only the last layer's [CLS] rows
      const plan = clsOnly ? attentionPlan(this.backend, this.config, input, tokens, keyMask, true) : fullAttention;
      const r = this.layerForward(l, x, input, tokens, plan, stream, save && minLevel <= l + 1);
      layers.push(r.cache);
      x = r.out;
      hidden?.push(keepHidden(x));
    }
    this.pass.current = this.pass.arena;
    if (this.head.reads === "selected") {
      // The selected tokens' states, in the order of input.selected
      const rowsOf = selectedRows(input, tokens);
      const features = this.pass.alloc(rowsOf.length * H);
      rowsOf.forEach((r, i) => features.set(x.subarray(r * H, r * H + H), i * H));
      return { pooled: features, hiddenStates: hidden, partial: save ? { input, tokens, minLevel, embeddings: emb.cache, layers, cls: features, pooled: features } : null };
    }
    if (this.head.reads === "tokens") {
      // Every token's state, in the padded layout the labels share (padding rows 0)
      const features = this.pass.fresh(rows * H);
      if (tokens.packed) toPadded(x, features, H, tokens, T);
      else features.set(x);
      return { pooled: features, hiddenStates: hidden, partial: save ? { input, tokens, minLevel, embeddings: emb.cache, layers, cls: features, pooled: features } : null };
    }
    // pooler: tanh(W · h[:, 0]); its input is kept for backward in the pass arena (x may be layer scratch)
    let cls: FArray;
    if (L > 0 && !hidden) {
      cls = this.pass.alloc(B * H); // the [CLS]-only last layer's whole output
      cls.set(x);
    } else {
      cls = clsRows(this.pass, x, tokens);
    }
    // The head's features: the pooler's tanh(W · h[:, 0]), or h[:, 0] itself in families without a pooler
    const pooled = this.pass.fresh(B * H);
    if (this.pooler) this.backend.tanhForward(this.pass.linear(this.pooler, cls, B, H, H), pooled, B * H);
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
    const rows = this.head.reads === "tokens" ? input.batch * input.seqLen : this.head.reads === "selected" ? input.selected!.length : input.batch;
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
    if (this.head.reads === "selected") {
      const dFeatures = this.classifyBackward(dLogits, cache.head, minLevel <= L);
      if (!dFeatures) return;
      dx = this.pass.arena.zeros(tokens.rows * H); // only the selected rows carry gradient
      selectedRows(input, tokens).forEach((r, i) => dx.set(dFeatures.subarray(i * H, i * H + H), r * H));
      this.backwardLayers(cache, dx);
      return;
    }
    if (this.head.reads === "tokens") {
      const dFeatures = this.classifyBackward(dLogits, cache.head, minLevel <= L);
      if (!dFeatures) return;
      dx = tokens.packed ? toPacked(dFeatures, this.pass.arena.float(tokens.rows * H), H, tokens, input.seqLen) : dFeatures;
      this.backwardLayers(cache, dx);
      return;
    }
    const dPooled = this.classifyBackward(dLogits, cache.head, minLevel <= L + 1);
    if (!dPooled) return;
    let dCls: FArray | null = minLevel <= L ? dPooled : null;
    if (this.pooler) {
      const dPre = this.pass.alloc(B * H);
      this.backend.tanhBackward(cache.pooled, dPooled, dPre, B * H);
      dCls = this.pass.linearBack(this.pooler, dPre, cache.cls, B, H, H, minLevel <= L);
    }
    if (!dCls) return;
    if (L > 0 && cache.layers[L - 1]!.attention.queryLen === 1) {
      dx = dCls; // the last layer produced only the [CLS] rows
    } else {
      dx = this.pass.arena.zeros(tokens.rows * H); // only the [CLS] rows carry gradient from the pooler
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
        this.pass.useArenaFor(l, false);
        const d = this.layerBackward(l, dx, cache.layers[l]!, input, tokens, minLevel <= l);
        if (!d) return;
        dx = d;
      }
      if (minLevel <= 0) {
        this.pass.useArenaFor(1, false);
        embeddingsBackward(this.pass, this.family, this.embeddingNames, this.projection, dx, cache.embeddings!);
      }
    } finally {
      this.pass.current = this.pass.temp = this.pass.arena;
    }
  }

  /**
   * Start accumulating a new gradient. Gradients of linear layers are not zeroed but marked stale (their next
   * backward overwrites them), so read params.grad only after a backward.
   */
  zeroGrad(): void {
    this.pass.zeroGrad();
  }
}
