/**
 * HF Trainer's `--optim` choices other than AdamW, each as the torch (or transformers) class computes one parameter's
 * update: torch.optim.SGD, Adagrad and RMSprop (weight decay added to the gradient, as torch couples it), and
 * transformers' Adafactor as `--optim adafactor` builds it (scale_parameter and relative_step off, the given lr).
 * They run in plain TypeScript on one parameter's flat slice: none of them is a GEMM-sized cost next to a step.
 */
import { WeitiaoError } from "../util/errors.js";

export const OPTIMIZERS = ["adamw_torch", "adamw_torch_fused", "sgd", "adagrad", "rmsprop", "adafactor"] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** --optim-args: HF's "key=value,key=value" for the keys each optimizer reads there. */
export interface OptimArgs {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  lr_decay?: number;
  eps?: number;
  alpha?: number;
  centered?: boolean;
}

const KEYS: Record<OptimizerName, string[]> = {
  adamw_torch: [], adamw_torch_fused: [], adafactor: [],
  sgd: ["momentum", "dampening", "weight_decay", "nesterov"],
  adagrad: ["lr_decay", "weight_decay", "eps"],
  rmsprop: ["momentum", "alpha", "eps", "weight_decay", "centered"],
};

/** Parse --optim-args as HF's _parse_optim_args and its per-optimizer readers (weight_decay is read, and then the
 *  parameter groups' --weight-decay overrides it, as in HF). */
export function parseOptimArgs(optim: OptimizerName, spec: string | undefined): OptimArgs {
  const out: Record<string, number | boolean> = {};
  if (!spec) return out;
  for (const pair of spec.replace(/\s/g, "").split(",").filter(Boolean)) {
    const [key, value, ...rest] = pair.split("=");
    if (!key || value === undefined || rest.length) throw new WeitiaoError(`--optim-args: "${pair}" is not key=value`);
    if (!KEYS[optim].includes(key)) throw new WeitiaoError(`--optim-args: ${optim} reads ${KEYS[optim].length ? KEYS[optim].join(", ") : "no arguments"}, not "${key}"`);
    if (key === "nesterov" || key === "centered") out[key] = ["true", "1", "yes"].includes(value.toLowerCase());
    else {
      const v = Number(value);
      if (!Number.isFinite(v)) throw new WeitiaoError(`--optim-args: ${key} must be a number, got "${value}"`);
      out[key] = v;
    }
  }
  if (optim === "sgd" && out.nesterov && !((out.momentum as number) > 0 && !out.dampening)) throw new WeitiaoError("--optim-args: nesterov needs a momentum and zero dampening (torch.optim.SGD)");
  return out as OptimArgs;
}

/** One parameter's update. `a` and `b` are its two state buffers (n values each), `c` a third (RMSprop centered). */
export interface UpdateArgs {
  p: Float32Array | Float64Array;
  g: Float32Array | Float64Array;
  /** The gradient's factor (clipping's coefficient). */
  gradScale: number;
  a: Float32Array | Float64Array;
  b: Float32Array | Float64Array;
  c: Float32Array | Float64Array | null;
  /** The parameter's shape (Adafactor factors matrices). */
  shape: number[];
  lr: number;
  weightDecay: number;
  /** Updates so far, this one included (1 at the first). */
  step: number;
  args: OptimArgs;
}

export function sgdUpdate(u: UpdateArgs): void {
  const { p, g, gradScale, a: buf, lr, weightDecay: wd, step } = u;
  const momentum = u.args.momentum ?? 0;
  const dampening = u.args.dampening ?? 0;
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! * gradScale + wd * p[i]!;
    if (momentum !== 0) {
      buf[i] = step === 1 ? d : momentum * buf[i]! + (1 - dampening) * d;
      d = u.args.nesterov ? d + momentum * buf[i]! : buf[i]!;
    }
    p[i] = p[i]! - lr * d;
  }
}

export function adagradUpdate(u: UpdateArgs): void {
  const { p, g, gradScale, a: sum, lr, weightDecay: wd, step } = u;
  const eps = u.args.eps ?? 1e-10;
  const clr = lr / (1 + (step - 1) * (u.args.lr_decay ?? 0));
  for (let i = 0; i < p.length; i++) {
    const d = g[i]! * gradScale + wd * p[i]!;
    sum[i] = sum[i]! + d * d;
    p[i] = p[i]! - (clr * d) / (Math.sqrt(sum[i]!) + eps);
  }
}

export function rmspropUpdate(u: UpdateArgs): void {
  const { p, g, gradScale, a: sq, b: buf, c: avg, lr, weightDecay: wd } = u;
  const alpha = u.args.alpha ?? 0.99;
  const eps = u.args.eps ?? 1e-8;
  const momentum = u.args.momentum ?? 0;
  for (let i = 0; i < p.length; i++) {
    const d = g[i]! * gradScale + wd * p[i]!;
    sq[i] = alpha * sq[i]! + (1 - alpha) * d * d;
    let denom: number;
    if (u.args.centered) {
      avg![i] = avg![i]! + (d - avg![i]!) * (1 - alpha); // torch's lerp_
      denom = Math.sqrt(sq[i]! - avg![i]! * avg![i]!) + eps;
    } else denom = Math.sqrt(sq[i]!) + eps;
    if (momentum > 0) {
      buf[i] = momentum * buf[i]! + d / denom;
      p[i] = p[i]! - lr * buf[i]!;
    } else p[i] = p[i]! - (lr * d) / denom;
  }
}

/**
 * transformers' Adafactor (eps (1e-30, 1e-3), clip_threshold 1, decay_rate −0.8, no first moment), with
 * scale_parameter and relative_step off as `--optim adafactor` sets them: a matrix keeps a row and a column second
 * moment (its R row values in `a`, its C column values in `b`), a vector a full one (in `a`).
 */
export function adafactorUpdate(u: UpdateArgs): void {
  const { p, g, gradScale, a, b, lr, weightDecay: wd, step, shape } = u;
  const n = p.length;
  const beta2t = 1 - Math.pow(step, -0.8);
  const upd = new Float64Array(n);
  if (shape.length >= 2) {
    const C = shape.at(-1)!;
    const R = n / C;
    const row = a.subarray(0, R);
    const col = b.subarray(0, C); // (a matrix of one row or column has R + C > R·C: the columns get their own buffer)
    const colMean = new Float64Array(C);
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < C; k++) {
        const gi = g[r * C + k]! * gradScale;
        const q = gi * gi + 1e-30;
        s += q;
        colMean[k]! += q;
      }
      row[r] = beta2t * row[r]! + (1 - beta2t) * (s / C);
    }
    let rowMean = 0;
    for (let k = 0; k < C; k++) col[k] = beta2t * col[k]! + (1 - beta2t) * (colMean[k]! / R);
    for (let r = 0; r < R; r++) rowMean += row[r]!;
    rowMean /= R;
    for (let r = 0; r < R; r++) {
      const rf = 1 / Math.sqrt(row[r]! / rowMean);
      for (let k = 0; k < C; k++) upd[r * C + k] = rf * (1 / Math.sqrt(col[k]!)) * g[r * C + k]! * gradScale;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const gi = g[i]! * gradScale;
      a[i] = beta2t * a[i]! + (1 - beta2t) * (gi * gi + 1e-30);
      upd[i] = gi / Math.sqrt(a[i]!);
    }
  }
  let sq = 0;
  for (let i = 0; i < n; i++) sq += upd[i]! * upd[i]!;
  const clip = Math.max(1, Math.sqrt(sq / n) / 1.0);
  for (let i = 0; i < n; i++) {
    if (wd !== 0) p[i] = p[i]! + p[i]! * (-wd * lr);
    p[i] = p[i]! - (upd[i]! / clip) * lr;
  }
}

export const UPDATES: Record<Exclude<OptimizerName, "adamw_torch" | "adamw_torch_fused">, (u: UpdateArgs) => void> = {
  sgd: sgdUpdate, adagrad: adagradUpdate, rmsprop: rmspropUpdate, adafactor: adafactorUpdate,
};
