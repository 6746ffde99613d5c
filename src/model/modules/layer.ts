/**
 * One encoder layer (task-model.ts runs them), forward and backward side by side: self-attention, attention output
 * (dense → dropout → residual → LayerNorm), intermediate (dense → GELU) and output (dense → dropout → residual →
 * LayerNorm), over the rows of modules/rows.ts.
 */
import type { AttentionCopies, AttentionShape, Bf16Copy, FArray } from "../../backend/types.js";
import type { DropoutCache, DropoutStream } from "../dropout.js";
import type { LayerNames } from "../families/family.js";
import type { PassContext } from "../pass.js";
import type { ModelInput } from "../task-model.js";
import { type AttentionPlan, clsRows, type TokenRows, toPacked, toPadded } from "./rows.js";

/**
 * With bf16 copies in use, x, xq, q, k, v, ctx, h1, inter and act are forward-only scratch (overwritten by later layers):
 * backward reads them only through `copies`.
 */
export interface LayerCache {
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

export interface LayerCopies {
  x: Bf16Copy | null;
  xq: Bf16Copy | null;
  attention: AttentionCopies | null;
  ctx: Bf16Copy | null;
  h1: Bf16Copy | null;
  /** The intermediate dense's output: with copies it exists in bf16 only, as under torch.autocast. */
  inter: Bf16Copy | null;
  act: Bf16Copy | null;
}

/**
 * One encoder layer over the token rows x (see TokenRows). With [CLS]-only attention (plan.shape.queryLen 1) the
 * output holds only the [CLS] rows ([B, H]): keys and values still come from every token, everything else runs on
 * the B query rows.
 */
export function layerForward(pass: PassContext, n: LayerNames, x: FArray, input: ModelInput, tokens: TokenRows, plan: AttentionPlan, hiddenDropout: number, attentionDropout: number, stream: DropoutStream | null, save: boolean): { out: FArray; cache: LayerCache | null } {
  const H = pass.config.hidden_size;
  const I = pass.config.intermediate_size;
  const { batch: B, seqLen: T } = input;
  const shape = plan.shape;
  const clsOnly = shape.queryLen === 1;
  const kvRows = tokens.rows;
  const rows = clsOnly ? B : tokens.rows;
  // A packed batch's attention runs on the packed rows where the backend takes them (see attentionPlan); otherwise
  // on the padded layout: keys and values are moved there, and so are queries and the context unless they are the
  // [CLS] rows alone (the same in both layouts).
  const moveKeys = tokens.packed && !shape.starts;
  const moveQuery = moveKeys && !clsOnly;
  // rows of k and v, and of q and the context, as attention reads and writes them; its probabilities [B, heads, Tq, T]
  const kvLayoutRows = moveKeys ? B * T : kvRows;
  const qLayoutRows = moveQuery ? B * T : rows;
  const nProbs = B * shape.heads * shape.queryLen! * shape.seqLen;
  const erfGelu = pass.config.hidden_act === "gelu";

  // bf16 copies of every GEMM input (when the backend uses them): each is converted once, at its first use
  const xCopy = pass.copyFor(kvRows * H);
  // With copies, backward reads GEMM inputs only through them: the fp32 tensors are forward-only scratch, and q,
  // k, v, ctx and act (read by nothing but bf16 GEMMs) are produced as copies only.
  const gemmInput = (n: number): FArray => (xCopy ? pass.allocTemp(n) : pass.alloc(n));
  const tempCopy = (n: number): Bf16Copy | null => (xCopy ? { data: pass.temp.u16(n), ready: false } : null);
  const ctxCopy = pass.copyFor(rows * H);
  const attention: AttentionCopies | null = xCopy
    ? {
        q: pass.copyFor(qLayoutRows * H)!, k: pass.copyFor(kvLayoutRows * H)!, v: pass.copyFor(kvLayoutRows * H)!,
        p: save ? pass.copyFor(nProbs)! : undefined, ctx: moveQuery ? tempCopy(qLayoutRows * H)! : ctxCopy!,
      }
    : null;
  const copies: LayerCopies = {
    x: xCopy,
    xq: clsOnly ? pass.copyFor(rows * H) : xCopy,
    attention,
    ctx: ctxCopy,
    h1: pass.copyFor(rows * H),
    // the erf GELU's fused kernels take bf16 copies; gelu_new (ALBERT) runs on fp32 tensors kept for backward
    inter: erfGelu ? pass.copyFor(rows * I) : null,
    act: erfGelu ? pass.copyFor(rows * I) : null,
  };

  // self-attention; a projection whose output attention reads padded is computed packed into scratch, then moved
  const project = (name: string, input: FArray, inRows: number, inCopy: Bf16Copy | null, padded: boolean, yCopy: Bf16Copy | undefined): FArray => {
    if (!padded) return pass.linear(name, input, inRows, H, H, inCopy, gemmInput(inRows * H), yCopy);
    const packedCopy = tempCopy(inRows * H);
    const y = pass.linear(name, input, inRows, H, H, inCopy, pass.allocTemp(inRows * H), packedCopy);
    const out = gemmInput(B * T * H); // with copies only a placeholder: attention reads yCopy
    if (packedCopy && yCopy) {
      toPadded(packedCopy.data, yCopy.data, H, tokens, T);
      yCopy.ready = true;
    } else {
      toPadded(y, out, H, tokens, T);
    }
    return out;
  };
  const xq = clsOnly ? clsRows(pass, x, tokens) : x;
  const q = project(n.query, xq, rows, copies.xq, moveQuery, attention?.q);
  const k = project(n.key, x, kvRows, copies.x, moveKeys, attention?.k);
  const v = project(n.value, x, kvRows, copies.x, moveKeys, attention?.v);
  // probabilities and dropout mask are kept for backward only (without, the backend may hold them in scratch)
  const probs = save ? pass.alloc(nProbs) : null;
  const paddedCtx = moveQuery ? pass.allocTemp(B * T * H) : gemmInput(rows * H);
  const attnDrop = stream && attentionDropout > 0 ? stream.next(attentionDropout, nProbs) : null;
  const attnKeep = attnDrop && save ? pass.current.byte(nProbs) : null;
  pass.backend.attentionForward({ q, k, v, keyMask: plan.keyMask, shape, probs, ctx: paddedCtx, dropout: attnDrop, keep: attnKeep, copies: copies.attention });
  let ctx = paddedCtx;
  if (moveQuery) {
    ctx = gemmInput(rows * H);
    if (attention && ctxCopy) {
      toPacked(attention.ctx!.data, ctxCopy.data, H, tokens, T);
      ctxCopy.ready = true;
    } else {
      toPacked(paddedCtx, ctx, H, tokens, T);
    }
  }

  // attention output: dense → dropout → residual → LayerNorm
  const attnOut = pass.linear(n.attentionOutput, ctx, rows, H, H, copies.ctx, pass.allocTemp(rows * H));
  const ln1 = pass.dropoutAddLayerNorm(n.attentionNorm, attnOut, xq, rows, H, hiddenDropout, stream, save, gemmInput(rows * H), copies.h1);

  // feed-forward: dense → GELU → dense → dropout → residual → LayerNorm
  const ffnBuffer = (n: number): FArray => (erfGelu ? gemmInput(n) : pass.alloc(n));
  const inter = pass.linear(n.intermediate, ln1.y, rows, H, I, copies.h1, ffnBuffer(rows * I), copies.inter);
  const act = ffnBuffer(rows * I);
  if (erfGelu) pass.backend.geluForward(inter, act, rows * I, copies.act, copies.inter); // with copies, only bf16 copies are written
  else pass.backend.activationForward("gelu_new", inter, act, rows * I);
  const ffnOut = pass.linear(n.output, act, rows, I, H, copies.act, pass.allocTemp(rows * H));
  const ln2 = pass.dropoutAddLayerNorm(n.outputNorm, ffnOut, ln1.y, rows, H, hiddenDropout, stream, save, gemmInput(rows * H), null); // the next layer's x

  const cache: LayerCache | null = save
    ? {
        x, xq, copies, attention: shape, q, k, v, probs: probs!, attnKeep, ctx, drop1: ln1.drop, sum1: ln1.sum, mean1: ln1.mean, rstd1: ln1.rstd, h1: ln1.y,
        inter, act, drop2: ln2.drop, sum2: ln2.sum, mean2: ln2.mean, rstd2: ln2.rstd,
      }
    : null;
  return { out: ln2.y, cache };
}

/** Backward through one layer (dOut has the rows its forward produced); returns d(input) when `needDx`. */
export function layerBackward(pass: PassContext, names: LayerNames, dOut: FArray, c: LayerCache, input: ModelInput, tokens: TokenRows, attentionDropout: number, needDx: boolean): FArray | null {
  const H = pass.config.hidden_size;
  const I = pass.config.intermediate_size;
  const { batch: B, seqLen: T } = input;
  const fullQuery = c.attention.queryLen !== 1;
  const rows = fullQuery ? tokens.rows : B;
  const kvRows = tokens.rows;
  const moveKeys = tokens.packed && !c.attention.starts; // as in layerForward
  const moveQuery = moveKeys && fullQuery;
  const n = rows * H;

  const dSum2 = pass.layerNormBack(names.outputNorm, dOut, c.sum2, c.mean2, c.rstd2, rows, H);
  const dFfnOut = pass.dropoutBack(dSum2, c.drop2, n);
  // with copies, dAct (like inter) exists in bf16 only, as under torch.autocast
  const dActCopy = c.copies.inter ? pass.copyFor(rows * I) : null;
  const dAct = pass.linearBack(names.output, dFfnOut, c.act, rows, I, H, true, { xCopy: c.copies.act, dxCopy: dActCopy })!;
  // GELU's backward runs inside the intermediate dense's (dInter = dAct·gelu'(inter) is never stored). Its input
  // gradient is added onto the residual branch's, dSum2, in place: nothing reads dSum2 (or dFfnOut, which may be
  // the same buffer) after the output dense's backward.
  let dH1: FArray;
  if (pass.config.hidden_act === "gelu" && !pass.hasLora(names.intermediate)) {
    dH1 = pass.linearBack(names.intermediate, dAct, c.h1, rows, H, I, true,
      { xCopy: c.copies.h1, geluInput: c.inter, addTo: dSum2, dyCopy: dActCopy, geluInputCopy: c.copies.inter })!;
  } else {
    // (also GELU's own backward where LoRA wraps the intermediate dense: its adapter reads dInter)
    const dInter = pass.alloc(rows * I);
    if (pass.config.hidden_act === "gelu") pass.backend.geluBackward(c.inter, dAct, dInter, rows * I);
    else pass.backend.activationBackward("gelu_new", c.inter, dAct, dInter, rows * I);
    dH1 = pass.linearBack(names.intermediate, dInter, c.h1, rows, H, I, true, { xCopy: c.copies.h1, addTo: dSum2 })!;
  }

  const dSum1 = pass.layerNormBack(names.attentionNorm, dH1, c.sum1, c.mean1, c.rstd1, rows, H);
  const dAttnOut = pass.dropoutBack(dSum1, c.drop1, n);
  // dctx is read by attention's bf16 products only: with copies it is produced in bf16 alone
  const attention = c.copies.attention && { ...c.copies.attention, dctx: pass.copyFor(n)! };
  let dCtx = pass.linearBack(names.attentionOutput, dAttnOut, c.ctx, rows, H, H, true, { xCopy: c.copies.ctx, dxCopy: attention?.dctx })!;
  if (moveQuery) {
    if (attention) {
      attention.dctx = { data: toPadded(attention.dctx.data, pass.current.u16(B * T * H), H, tokens, T), ready: true };
    } else {
      dCtx = toPadded(dCtx, pass.alloc(B * T * H), H, tokens, T);
    }
  }

  const kvLayoutRows = moveKeys ? B * T : kvRows;
  const dq = pass.alloc((moveQuery ? B * T : rows) * H);
  const dk = pass.alloc(kvLayoutRows * H);
  const dv = pass.alloc(kvLayoutRows * H);
  pass.backend.attentionBackward({
    q: c.q, k: c.k, v: c.v, probs: c.probs, keep: c.attnKeep, dropoutP: attentionDropout, dctx: dCtx, shape: c.attention, dq, dk, dv,
    copies: attention,
  });
  const packed = (d: FArray, moved: boolean, size: number): FArray => (moved ? toPacked(d, pass.alloc(size), H, tokens, T) : d);
  // K, V (and Q, when it has every row) add their input gradients onto the residual branch's, dSum1, in place (as
  // for dSum2 above) as the products are stored
  const dx = pass.linearBack(names.key, packed(dk, moveKeys, kvRows * H), c.x, kvRows, H, H, needDx, { xCopy: c.copies.x, addTo: fullQuery ? dSum1 : null });
  // The key bias's gradient is exactly zero (softmax ignores a per-query constant); what a float GEMM computes is
  // rounding noise (~1e-10), which Adam's eps of 1e-8 turns into random steps of up to ~5% of the lr. PyTorch keeps
  // that noise; we keep the exact value, so the key bias stays where the checkpoint put it.
  pass.g(`${names.key}.bias`)?.fill(0);
  pass.linearBack(names.value, packed(dv, moveKeys, kvRows * H), c.x, kvRows, H, H, needDx, { xCopy: c.copies.x, addTo: dx });
  const dxq = pass.linearBack(names.query, packed(dq, moveQuery, n), c.xq, rows, H, H, needDx, { xCopy: c.copies.xq, addTo: fullQuery ? dx : null });
  if (!dx || !dxq) return null;
  if (!fullQuery) {
    // [CLS]-only layer: the query rows' gradient and the residual go back to each sequence's first row
    pass.backend.add(dxq, dSum1, dxq, n);
    tokens.starts.forEach((start, b) => {
      const row = dx.subarray(start * H, start * H + H);
      pass.backend.add(row, dxq.subarray(b * H, b * H + H), row, H);
    });
  }
  return dx;
}
