/**
 * The optimizer of a run: AdamW as torch.optim.AdamW (decoupled weight decay, the backend's fused kernel), or another
 * of HF's `--optim` choices (optimizers.ts), with HF Trainer's parameter groups: no decay for biases and LayerNorm
 * weights. Each parameter keeps its own step count, so parameters unfrozen later (gradual unfreezing) start with
 * fresh state and bias correction, as a new torch param group would.
 */
import type { FArray } from "../backend/types.js";
import type { TaskModel } from "../model/task-model.js";
import { allocFloat, isNoDecay } from "../model/params.js";
import { isSavedModule } from "../model/lora.js";
import { type OptimArgs, type OptimizerName, UPDATES } from "./optimizers.js";

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Which parameters are exempt from weight decay (HF Trainer's rule by default). */
  noDecay?: (name: string) => boolean;
  /** HF's --optim (default adamw_torch) and its --optim-args. */
  optim?: OptimizerName;
  optimArgs?: OptimArgs;
}

export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export class AdamW {
  /**
   * The state of the parameters that can train (`names`), one after another: AdamW's moments; SGD's momentum (m);
   * Adagrad's sums (m); RMSprop's square average (m) and momentum (v); Adafactor's factored second moment (m).
   */
  readonly m: FArray;
  readonly v: FArray;
  /** RMSprop centered's gradient average (null otherwise). */
  readonly u: FArray | null;
  /** Updates applied so far, per parameter (same order as model.params.specs). */
  readonly steps: Int32Array;
  /** The parameters with moments: all, or with LoRA only the adapter and the head (a frozen base gets none). */
  readonly names: string[];
  /** Per parameter, where its moments start in m and v (−1: none). */
  private readonly slot: Int32Array;

  constructor(private readonly model: TaskModel, readonly opts: AdamWOptions) {
    const { params } = model;
    const lora = model.lora;
    const eligible = lora ? new Set(params.specs.filter((s) => s.kind === "lora" || isSavedModule(lora, s.name)).map((s) => s.name)) : null;
    this.slot = new Int32Array(params.specs.length).fill(-1);
    this.names = [];
    let size = 0;
    for (const s of params.specs) {
      if (eligible && !eligible.has(s.name)) continue;
      this.slot[s.index] = size;
      this.names.push(s.name);
      size += s.size;
    }
    this.m = size === params.size ? params.newBuffer() : allocFloat(params.dtype, size);
    this.v = size === params.size ? params.newBuffer() : allocFloat(params.dtype, size);
    this.u = opts.optim === "rmsprop" && opts.optimArgs?.centered ? allocFloat(params.dtype, size) : null;
    this.steps = new Int32Array(params.specs.length);
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
      const at = this.slot[i]!;
      if (at < 0) throw new Error(`${s.name} trains but has no optimizer moments`);
      this.steps[i]! += 1;
      const weightDecay = (this.opts.noDecay ? this.opts.noDecay(s.name) : s.noDecay ?? isNoDecay(s.name)) ? 0 : this.opts.weightDecay;
      const optim = this.opts.optim ?? "adamw_torch";
      if (optim !== "adamw_torch" && optim !== "adamw_torch_fused") {
        UPDATES[optim]({
          p: params.data.subarray(s.offset, end), g: params.grad.subarray(s.offset, end), gradScale,
          a: this.m.subarray(at, at + s.size), b: this.v.subarray(at, at + s.size), c: this.u?.subarray(at, at + s.size) ?? null,
          shape: s.shape, lr: lr * lrScale(i), weightDecay, step: this.steps[i]!, args: this.opts.optimArgs ?? {},
        });
        return;
      }
      backend.adamw({
        p: params.data.subarray(s.offset, end), g: params.grad.subarray(s.offset, end),
        m: this.m.subarray(at, at + s.size), v: this.v.subarray(at, at + s.size), n: s.size,
        lr: lr * lrScale(i), beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps,
        weightDecay, step: this.steps[i]!, gradScale,
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
