/**
 * The compute backend: every numeric kernel the model and optimizer need, behind one small interface.
 * Two implementations: the TypeScript reference (`ts.ts`, the spec that tests compare against) and the
 * native C++ addon (`native.ts`). All tensors are row-major flat typed arrays; shapes are passed explicitly.
 *
 * The TypeScript backend accepts Float32Array and Float64Array (float64 for finite-difference gradient
 * checks); the native backend only Float32Array.
 */
export type FArray = Float32Array | Float64Array;

/** Dropout configuration for one call: probability and the counter-based RNG stream to draw from. */
export interface DropoutSpec {
  p: number;
  /** 32-bit seed of this step's stream. */
  seed: number;
  /** Counter offset of this call inside the stream, so that different call sites draw different numbers. */
  offset: number;
}

/**
 * A bf16 copy of an fp32 activation, kept next to it by a backend that runs GEMMs in bf16, so that a GEMM input is
 * converted once per pass instead of at every use (Q, K and V read the same x; backward reads it again for dW;
 * attention backward reads q, k, v again). The model allocates one per GEMM input when the backend sets
 * `usesBf16Copies`, with `ready` false; the first kernel that needs the copy fills it and sets `ready`.
 */
export interface Bf16Copy {
  data: Uint16Array;
  ready: boolean;
}

/** bf16 copies of attention's inputs, filled by attentionForward and read back by attentionBackward. */
export interface AttentionCopies {
  q: Bf16Copy;
  k: Bf16Copy;
  v: Bf16Copy;
  /**
   * The probabilities after dropout (the P·V product's input, [B, H, Tq, T]) in bf16: forward makes them anyway;
   * kept, they spare backward a pass that rebuilds them from probs and the mask.
   */
  p?: Bf16Copy;
  /** Forward output: with it, the context goes to this bf16 copy (made ready) instead of ctx. */
  ctx?: Bf16Copy;
  /** Backward input: dctx's bf16 copy, read instead of dctx when ready (see LinearBackwardOptions.dxCopy). */
  dctx?: Bf16Copy;
}

export interface LinearBackwardOptions {
  /**
   * dW and db are written instead of added to: their contents are stale (the model knows that no gradient has been
   * accumulated there since zeroGrad), which spares zeroing them and reading them back.
   */
  overwriteGrads?: boolean;
  /** The copy of x that the forward filled (see Bf16Copy). */
  xCopy?: Bf16Copy | null;
  /**
   * This layer's output y went through GELU and dy is the gradient at GELU's output: the layer's own output gradient
   * is dy · gelu'(y), formed inside this call (y = geluInput) exactly as geluBackward would.
   */
  geluInput?: FArray | null;
  /**
   * dy given only as its bf16 copy (ready; a backend that uses copies): read instead of dy. With geluInput, GELU's
   * input must then be given the same way (geluInputCopy). As torch.autocast keeps them, in bf16.
   */
  dyCopy?: Bf16Copy | null;
  /** geluInput given only as its bf16 copy (ready), read instead of geluInput; goes with dyCopy. */
  geluInputCopy?: Bf16Copy | null;
  /** dx += dy · W instead of dx = dy · W (Q, K and V send their gradients to the same x). */
  accumulateDx?: boolean;
  /**
   * For a dx that only bf16 GEMMs read (a backend that uses bf16 copies; not with accumulateDx): dx = dy · W goes to
   * this copy, made ready, rounded from the fp32 product as converting dx would be; dx itself is not written.
   */
  dxCopy?: Bf16Copy | null;
}

export interface AttentionShape {
  batch: number;
  /** Key/value rows per sequence. */
  seqLen: number;
  heads: number;
  headDim: number;
  /**
   * Query rows per sequence (default seqLen). 1 computes attention for each sequence's first ([CLS]) row only:
   * q, ctx and their gradients are then [B, H·D] and probs [B, heads, 1, seqLen].
   */
  queryLen?: number;
  /**
   * Per sequence, the rows attention has to compute (a packed batch's rows moved to the padded layout): every key at
   * or beyond lengths[b] is masked (−∞ in keyMask), and, when queries are every row, nothing reads query rows at or
   * beyond it. A backend may then skip those keys and query rows: it leaves their ctx, dq, dk, dv rows and the probs
   * (and keep) entries outside [0, n)² unwritten, and its backward reads none of them.
   */
  lengths?: Int32Array;
  /**
   * With lengths, every query row (queryLen = seqLen) and a backend whose `packedAttention` accepts the shape: q, k,
   * v, ctx and their gradients are packed, sequence b's lengths[b] rows starting at row starts[b] (probs and keep keep
   * their [B, H, T, T] layout). Saves moving them to the padded layout and back.
   */
  starts?: Int32Array;
}

export type PointwiseActivation = "gelu_new" | "relu";

/**
 * attentionForward's arguments: scaled dot-product attention over q [B·Tq, H·D] and k, v [B·T, H·D]
 * (Tq = shape.queryLen ?? T).
 */
export interface AttentionForwardArgs {
  q: FArray;
  k: FArray;
  v: FArray;
  /** Additive key mask [B·T]: 0 or −∞ per key. */
  keyMask: Float32Array;
  shape: AttentionShape;
  /**
   * The softmax probabilities [B,H,Tq,T] (before dropout), saved for backward; null when no backward will run: then
   * neither they nor the dropout mask are kept, so a backend may hold each head's probabilities in scratch.
   */
  probs: FArray | null;
  /** The output [B·Tq, H·D]. */
  ctx: FArray;
  /** Dropout on the probabilities, or null for none. */
  dropout: DropoutSpec | null;
  /** The dropout keep-mask [B,H,Tq,T], saved for backward; with it null dropout still applies, its mask unkept. */
  keep: Uint8Array | null;
  copies?: AttentionCopies | null;
}

/** attentionBackward's arguments: the forward's inputs and saved tensors, dctx, and dq, dk, dv (overwritten). */
export interface AttentionBackwardArgs {
  q: FArray;
  k: FArray;
  v: FArray;
  /** The probabilities the forward saved. */
  probs: FArray;
  /** The forward's keep-mask, or null when it ran without dropout. */
  keep: Uint8Array | null;
  /** The forward's dropout probability (read with keep). */
  dropoutP: number;
  dctx: FArray;
  shape: AttentionShape;
  dq: FArray;
  dk: FArray;
  dv: FArray;
  copies?: AttentionCopies | null;
}

/**
 * dropoutAddLayerNorm's arguments: sum = dropout(x) + residual and y = LayerNorm(sum) over rows × cols, with mean and
 * 1/σ per row saved.
 */
export interface DropoutAddLayerNormArgs {
  x: FArray;
  residual: FArray;
  gamma: FArray;
  beta: FArray;
  sum: FArray;
  y: FArray;
  mean: FArray;
  rstd: FArray;
  rows: number;
  cols: number;
  eps: number;
  /** Dropout on x, or null for none. */
  dropout: DropoutSpec | null;
  /** The dropout mask (with dropout). */
  keep: Uint8Array | null;
  /** y's bf16 copy, written too when given (see Bf16Copy). */
  yCopy?: Bf16Copy | null;
}

/** adamw's arguments: one parameter's flat slice of n values, its gradient and moments, and the hyperparameters. */
export interface AdamWArgs {
  p: FArray;
  g: FArray;
  m: FArray;
  v: FArray;
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** This parameter's update count, from 1 (bias correction). */
  step: number;
  /**
   * Gradient clipping's coefficient (default 1): multiplies each gradient as it is read, exactly as scale() would have
   * beforehand, without a separate pass; g itself is left as it is.
   */
  gradScale?: number;
}

export interface Backend {
  readonly name: string;
  /** True when this backend can run float64 tensors (gradient checks). */
  readonly supportsFloat64: boolean;
  /** True when the kernels below take Bf16Copy arguments (bf16 GEMMs); otherwise callers pass none. */
  readonly usesBf16Copies?: boolean;
  /**
   * A hint for a large buffer nothing has touched yet (parameters, gradients, optimizer moments, activation slabs):
   * back it with huge pages if the system allows. Contents and results are unaffected.
   */
  adviseHugePages?(buffer: ArrayBuffer): void;
  /**
   * Where packedAttention refuses a packed batch at its padded length, it may take one at a padded length rounded up
   * to a multiple of this (the extra keys masked): the model then rounds up rather than moving the rows to the padded
   * layout and back (see TaskModel.attentionPlan). The native bf16 backend's per-head kernels work in tiles of 16 rows
   * along the sequence; 1 where any length that can be taken is taken as it is.
   */
  readonly packedLengthMultiple: number;
  /**
   * A packed batch's row count (real tokens, then a few padding rows kept) is rounded up to a multiple of this: the
   * native backend builds its GEMM kernels (oneDNN primitives) per row count, and real token counts would make nearly
   * every batch a new one (see TaskModel.tokenRows).
   */
  readonly rowCountMultiple: number;

  /**
   * y[rows,out] = x[rows,in] · Wᵀ + b, with W stored [out,in] as torch.nn.Linear does. `xCopy`: see Bf16Copy. With
   * `yCopy` (for a y that only bf16 GEMMs read) the result goes to y's bf16 copy, made ready, and y is not written.
   */
  linearForward(x: FArray, w: FArray, b: FArray, y: FArray, rows: number, inF: number, outF: number, xCopy?: Bf16Copy | null, yCopy?: Bf16Copy | null): void;
  /**
   * dx = dy · W (overwrites dx), dW += dyᵀ · x, db += Σ_rows dy. Any of dx/dw/db may be null (frozen weights or
   * no need to backprop further down). See LinearBackwardOptions for the variants.
   */
  linearBackward(
    dy: FArray, x: FArray, w: FArray, dx: FArray | null, dw: FArray | null, db: FArray | null,
    rows: number, inF: number, outF: number, opts?: LinearBackwardOptions,
  ): void;

  /** out = a + b elementwise. */
  add(a: FArray, b: FArray, out: FArray, n: number): void;
  /**
   * HF `gelu`: x·Φ(x) with the exact erf. With `yCopy` (a backend that uses bf16 copies) only the bf16 copy of y is
   * written and made ready: y feeds nothing but the next GEMM, which reads the copy. With `xCopy` (ready) x is read
   * from its bf16 copy instead.
   */
  geluForward(x: FArray, y: FArray, n: number, yCopy?: Bf16Copy | null, xCopy?: Bf16Copy | null): void;
  /** dx = dy · gelu'(x). */
  geluBackward(x: FArray, dy: FArray, dx: FArray, n: number): void;
  tanhForward(x: FArray, y: FArray, n: number): void;
  /** dx = dy · (1 − y²), from the forward output y. */
  tanhBackward(y: FArray, dy: FArray, dx: FArray, n: number): void;
  /**
   * The other activations families use: HF `gelu_new` (the tanh approximation, ALBERT) and `relu` (DistilBERT's
   * head). fp32 in and out; the erf GELU keeps its own fused kernels above.
   */
  activationForward(kind: PointwiseActivation, x: FArray, y: FArray, n: number): void;
  /** dx = dy · act'(x). */
  activationBackward(kind: PointwiseActivation, x: FArray, dy: FArray, dx: FArray, n: number): void;

  /** Row-wise LayerNorm; saves mean and 1/σ per row for the backward pass. */
  layerNormForward(
    x: FArray, gamma: FArray, beta: FArray, y: FArray, mean: FArray, rstd: FArray,
    rows: number, cols: number, eps: number,
  ): void;
  /** dx overwritten; dgamma/dbeta accumulated (null when frozen). */
  layerNormBackward(
    dy: FArray, x: FArray, mean: FArray, rstd: FArray, gamma: FArray,
    dx: FArray, dgamma: FArray | null, dbeta: FArray | null, rows: number, cols: number,
  ): void;

  /**
   * Scaled dot-product attention over q [B·Tq, H·D] and k,v [B·T, H·D] with an additive key mask [B·T] (0 or −∞
   * per key); Tq = shape.queryLen ?? T. Saves the softmax probabilities [B,H,Tq,T] (before dropout) and the
   * dropout keep-mask for backward; with `probs` null (no backward will run) neither is kept, so a backend may hold
   * each head's probabilities in scratch (with `keep` null dropout still applies, its mask unkept).
   */
  attentionForward(args: AttentionForwardArgs): void;
  /** Whether attention takes this shape's rows packed (AttentionShape.starts); when absent, it does not. */
  packedAttention?(shape: AttentionShape): boolean;
  /** dq, dk, dv overwritten. */
  attentionBackward(args: AttentionBackwardArgs): void;

  /** y = x · keep / (1 − p), drawing keep from the counter-based RNG. */
  dropoutForward(x: FArray, y: FArray, keep: Uint8Array, n: number, spec: DropoutSpec): void;
  /**
   * BERT's sublayer output in one pass: sum = dropout(x) + residual, y = LayerNorm(sum) (mean, 1/σ saved), exactly
   * as dropoutForward (same stream, same mask in `keep`), add and layerNormForward one after the other. No dropout
   * when `dropout` is null. With `yCopy`, y's bf16 copy is written too (see Bf16Copy).
   */
  dropoutAddLayerNorm(args: DropoutAddLayerNormArgs): void;
  dropoutBackward(dy: FArray, dx: FArray, keep: Uint8Array, n: number, p: number): void;

  /** out[r,:] = word[ids[r]] + pos[posIds[r]] + type[typeIds[r]]. */
  embeddingForward(
    ids: Int32Array, posIds: Int32Array, typeIds: Int32Array,
    word: FArray, pos: FArray, type: FArray, out: FArray, rows: number, hidden: number,
  ): void;
  /** table[ids[r]] += dOut[r] for every r whose id is not `skipId` (HF's padding_idx gets no gradient). */
  embeddingBackward(
    ids: Int32Array, dOut: FArray, table: FArray, rows: number, hidden: number, skipId: number,
  ): void;

  /**
   * Softmax cross-entropy per row against integer labels. Writes probabilities, returns the summed loss.
   * Rows whose label is negative (ignore) contribute nothing.
   */
  crossEntropyForward(logits: FArray, labels: Int32Array, probs: FArray, rows: number, classes: number): number;
  /** dlogits = (probs − onehot(label)) · scale. */
  crossEntropyBackward(probs: FArray, labels: Int32Array, dlogits: FArray, rows: number, classes: number, scale: number): void;

  /**
   * torch.optim.AdamW update on a flat slice: p ← p·(1 − lr·wd); m, v moments; p ← p − lr/bc1 · m/(√v/√bc2 + ε).
   * `gradScale` (gradient clipping's coefficient, default 1) multiplies each gradient as it is read, exactly as
   * scale() would have beforehand, without a separate pass; g itself is left as it is.
   */
  adamw(args: AdamWArgs): void;
  /** Σ x², accumulated in float64. */
  sumSquares(x: FArray, n: number): number;
  /** x ← x · s: clipping as a separate pass, the reference that adamw's gradScale is tested against. */
  scale(x: FArray, n: number, s: number): void;
}
