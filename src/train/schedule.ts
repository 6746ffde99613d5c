import { WeitiaoError } from "../util/errors.js";
/**
 * HF get_linear_schedule_with_warmup: the update at 0-based step t uses
 *   base · t/W            while t < W (so the first update has lr 0),
 *   base · (T−t)/(T−W)    afterwards, never below 0.
 * The floating-point order of operations reproduces transformers 5.17's values bit for bit (checked against
 * the reference trajectories): (base·t)/W in warmup, base·((T−t)/(T−W)) in decay.
 */
export function linearWarmupDecay(base: number, step: number, warmup: number, total: number): number {
  if (step < warmup) return (base * step) / Math.max(1, warmup);
  return base * Math.max(0, (total - step) / Math.max(1, total - warmup));
}

/** HF's warmup steps from --warmup-steps or --warmup-ratio (steps win when both are given). */
export function warmupSteps(total: number, steps: number | undefined, ratio: number | undefined): number {
  if (steps !== undefined && steps > 0 && steps < 1) return Math.ceil(total * steps); // HF 5: a float below 1 is a ratio
  if (steps !== undefined && steps > 0) return steps;
  return ratio ? Math.ceil(total * ratio) : 0;
}

/** HF's lr_scheduler_type values implemented here (transformers' optimization.py). */
export const LR_SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr"] as const;
export type LrScheduler = (typeof LR_SCHEDULERS)[number];

/** --lr-scheduler-kwargs: HF's scheduler_specific_kwargs (num_cycles, lr_end, power, timescale, min_lr, min_lr_rate). */
export interface SchedulerKwargs {
  num_cycles?: number;
  lr_end?: number;
  power?: number;
  timescale?: number;
  min_lr?: number;
  min_lr_rate?: number;
}

/**
 * The learning rate of the update at 0-based step t: base × HF's lr_lambda for the scheduler (LambdaLR multiplies),
 * each formula as transformers writes it; linear keeps linearWarmupDecay's bit-exact order.
 */
export function learningRateAt(kind: LrScheduler, base: number, t: number, warmup: number, total: number, kw: SchedulerKwargs = {}): number {
  if (kind === "linear") return linearWarmupDecay(base, t, warmup, total);
  if (kind === "constant") return base;
  if (t < warmup) return base * (t / Math.max(1, warmup));
  const progress = (t - warmup) / Math.max(1, total - warmup);
  switch (kind) {
    case "constant_with_warmup":
      return base;
    case "cosine":
      return base * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (kw.num_cycles ?? 0.5) * 2 * progress)));
    case "cosine_with_restarts":
      if (progress >= 1) return 0;
      return base * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (((kw.num_cycles ?? 1) * progress) % 1))));
    case "polynomial": {
      const lrEnd = kw.lr_end ?? 1e-7;
      if (t > total) return base * (lrEnd / base);
      const pctRemaining = 1 - (t - warmup) / (total - warmup);
      return base * (((base - lrEnd) * pctRemaining ** (kw.power ?? 1) + lrEnd) / base);
    }
    case "inverse_sqrt": {
      const timescale = kw.timescale ?? (warmup || 10_000);
      return base * (1 / Math.sqrt((t + (timescale - warmup)) / timescale));
    }
    case "cosine_with_min_lr": {
      const rate = kw.min_lr_rate ?? (kw.min_lr ?? 0) / base;
      const factor = 0.5 * (1 + Math.cos(Math.PI * (kw.num_cycles ?? 0.5) * 2 * progress)) * (1 - rate) + rate;
      return base * Math.max(0, factor);
    }
  }
}

/** Parse and check --lr-scheduler-kwargs (a JSON object) for the scheduler, as HF's get_scheduler would refuse it. */
export function schedulerKwargs(kind: LrScheduler, json: string | undefined, base: number): SchedulerKwargs {
  let kw: unknown;
  try {
    kw = JSON.parse(json === undefined || json === "" ? "{}" : json);
  } catch (e) {
    throw new WeitiaoError(`--lr-scheduler-kwargs must be a JSON object, e.g. '{"num_cycles": 2}' (${(e as Error).message})`);
  }
  if (kw === null || typeof kw !== "object" || Array.isArray(kw)) throw new WeitiaoError(`--lr-scheduler-kwargs must be a JSON object, e.g. '{"num_cycles": 2}'`);
  const allowed: Record<LrScheduler, string[]> = {
    linear: [], constant: [], constant_with_warmup: [], cosine: ["num_cycles"], cosine_with_restarts: ["num_cycles"],
    polynomial: ["lr_end", "power"], inverse_sqrt: ["timescale"], cosine_with_min_lr: ["num_cycles", "min_lr", "min_lr_rate"],
  };
  for (const [k, v] of Object.entries(kw)) {
    if (!allowed[kind].includes(k)) throw new WeitiaoError(`--lr-scheduler-kwargs: ${kind} takes ${allowed[kind].length ? allowed[kind].join(", ") : "no arguments"}, not "${k}"`);
    if (typeof v !== "number" || !Number.isFinite(v)) throw new WeitiaoError(`--lr-scheduler-kwargs: ${k} must be a number, got ${JSON.stringify(v)}`);
  }
  const out = kw as SchedulerKwargs;
  if (kind === "polynomial" && !(base > (out.lr_end ?? 1e-7))) throw new WeitiaoError(`--lr-scheduler-kwargs: lr_end (${out.lr_end ?? 1e-7}) must be smaller than the learning rate (${base})`);
  if (kind === "cosine_with_min_lr" && (out.min_lr === undefined) === (out.min_lr_rate === undefined)) {
    throw new WeitiaoError("--lr-scheduler-kwargs: cosine_with_min_lr needs exactly one of min_lr and min_lr_rate");
  }
  return out;
}
