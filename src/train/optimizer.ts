/**
 * AdamW as torch.optim.AdamW (decoupled weight decay), with HF Trainer's parameter groups: no decay for biases
 * and LayerNorm weights. Each parameter keeps its own step count, so parameters unfrozen later (gradual
 * unfreezing) start with fresh moments and bias correction, as a new torch param group would.
 */
import type { FArray } from "../backend/types.js";
import type { TaskModel } from "../model/task-model.js";
import { isNoDecay } from "../model/params.js";

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Which parameters are exempt from weight decay (HF Trainer's rule by default). */
  noDecay?: (name: string) => boolean;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export class AdamW {
  readonly m: FArray;
  readonly v: FArray;
  /** Updates applied so far, per parameter (same order as model.params.specs). */
  readonly steps: Int32Array;

  constructor(private readonly model: TaskModel, readonly opts: AdamWOptions) {
    this.m = model.params.newBuffer();
    this.v = model.params.newBuffer();
    this.steps = new Int32Array(model.params.specs.length);
  }

  /**
   * One update of every trainable parameter; `lrScale(i)` multiplies the lr of parameter i (layer-wise decay),
   * `gradScale` every gradient (gradient clipping's coefficient from clipCoefficient(), fused into the update).
   */
  step(lr: number, lrScale: (index: number) => number = () => 1, gradScale = 1): void {
    const { params, backend, trainable } = this.model;
    params.specs.forEach((s, i) => {
      if (!trainable[i]) return;
      const end = s.offset + s.size;
      this.steps[i]! += 1;
      backend.adamw({
        p: params.data.subarray(s.offset, end), g: params.grad.subarray(s.offset, end),
        m: this.m.subarray(s.offset, end), v: this.v.subarray(s.offset, end), n: s.size,
        lr: lr * lrScale(i), beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps,
        weightDecay: (this.opts.noDecay ? this.opts.noDecay(s.name) : s.noDecay ?? isNoDecay(s.name)) ? 0 : this.opts.weightDecay,
        step: this.steps[i]!, gradScale,
      });
    });
  }
}

/**
 * torch.nn.utils.clip_grad_norm_'s arithmetic over the trainable parameters: the total L2 norm before clipping,
 * and the factor max_norm/(norm + 1e-6) (1 when that is not below 1, or when maxNorm ≤ 0) that the gradients
 * are to be multiplied by. Pass `coef` to AdamW.step to apply it inside the update.
 */
export function clipCoefficient(model: TaskModel, maxNorm: number): { norm: number; coef: number } {
  const { params, backend, trainable } = model;
  let sq = 0;
  params.specs.forEach((s, i) => {
    if (trainable[i]) sq += backend.sumSquares(params.grad.subarray(s.offset, s.offset + s.size), s.size);
  });
  const norm = Math.sqrt(sq);
  const coef = maxNorm > 0 ? maxNorm / (norm + 1e-6) : 1;
  return { norm, coef: coef < 1 ? coef : 1 };
}
