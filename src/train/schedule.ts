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
export const LR_SCHEDULERS = [
  "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr",
  "warmup_stable_decay", "reduce_lr_on_plateau",
] as const;
export type LrScheduler = (typeof LR_SCHEDULERS)[number];

/** The shapes of warmup_stable_decay's warmup and decay (get_wsd_schedule's warmup_type, decay_type). */
type WsdShape = "linear" | "cosine" | "1-sqrt";

/**
 * --lr-scheduler-kwargs: HF's scheduler_specific_kwargs (num_cycles, lr_end, power, timescale, min_lr, min_lr_rate;
 * warmup_stable_decay's num_decay_steps, num_stable_steps, warmup_type, decay_type, min_lr_ratio; and
 * ReduceLROnPlateau's mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps).
 */
export interface SchedulerKwargs {
  num_cycles?: number;
  lr_end?: number;
  power?: number;
  timescale?: number;
  min_lr?: number;
  min_lr_rate?: number;
  num_decay_steps?: number;
  num_stable_steps?: number;
  warmup_type?: WsdShape;
  decay_type?: WsdShape;
  min_lr_ratio?: number;
  mode?: "min" | "max";
  factor?: number;
  patience?: number;
  threshold?: number;
  threshold_mode?: "rel" | "abs";
  cooldown?: number;
  eps?: number;
}

/** _get_wsd_scheduler_lambda: warmup, a stable phase (by default the steps warmup and decay leave), decay, then min_lr_ratio. */
function wsdFactor(t: number, warmup: number, total: number, kw: SchedulerKwargs): number {
  const minRatio = kw.min_lr_ratio ?? 0;
  const decay = kw.num_decay_steps!;
  const stable = kw.num_stable_steps ?? total - warmup - decay;
  const shaped = (kind: WsdShape, progress: number, rising: boolean): number => {
    if (kind === "linear") return rising ? progress : 1 - progress;
    if (kind === "cosine") return rising ? 0.5 * (1 - Math.cos(Math.PI * progress)) : 0.5 * (1 + Math.cos(Math.PI * (kw.num_cycles ?? 0.5) * 2 * progress));
    return rising ? 1 - Math.sqrt(1 - progress) : 1 - Math.sqrt(progress);
  };
  if (t < warmup) return Math.max(0, shaped(kw.warmup_type ?? "linear", t / Math.max(1, warmup), true) * (1 - minRatio) + minRatio);
  if (t < warmup + stable) return 1;
  if (t < warmup + stable + decay) return Math.max(0, shaped(kw.decay_type ?? "cosine", (t - warmup - stable) / Math.max(1, decay), false) * (1 - minRatio) + minRatio);
  return minRatio;
}

/** torch's ReduceLROnPlateau as HF Trainer drives it: its state, stepped with each evaluation's metric. */
export interface PlateauState {
  lr: number;
  /** The best metric so far (null before the first evaluation: torch's ±inf, which JSON cannot hold). */
  best: number | null;
  bad: number;
  cooldown: number;
}

export function plateauStart(base: number): PlateauState {
  return { lr: base, best: null, bad: 0, cooldown: 0 };
}

/** ReduceLROnPlateau.step(metric): a new state (the lr the following updates use). */
export function plateauStep(s: PlateauState, metric: number, kw: SchedulerKwargs): PlateauState {
  const mode = kw.mode ?? "min";
  const threshold = kw.threshold ?? 1e-4;
  const rel = (kw.threshold_mode ?? "rel") === "rel";
  const better = s.best === null ||
    (mode === "min" ? metric < (rel ? s.best * (1 - threshold) : s.best - threshold) : metric > (rel ? s.best * (threshold + 1) : s.best + threshold));
  let { lr, best, bad, cooldown } = s;
  if (better) {
    best = metric;
    bad = 0;
  } else bad++;
  if (cooldown > 0) {
    cooldown--;
    bad = 0;
  }
  if (bad > (kw.patience ?? 10)) {
    const next = Math.max(lr * (kw.factor ?? 0.1), kw.min_lr ?? 0);
    if (lr - next > (kw.eps ?? 1e-8)) lr = next;
    cooldown = kw.cooldown ?? 0;
    bad = 0;
  }
  return { lr, best, bad, cooldown };
}

/**
 * The learning rate of the update at 0-based step t: base × HF's lr_lambda for the scheduler (LambdaLR multiplies),
 * each formula as transformers writes it; linear keeps linearWarmupDecay's bit-exact order.
 */
export function learningRateAt(kind: LrScheduler, base: number, t: number, warmup: number, total: number, kw: SchedulerKwargs = {}): number {
  if (kind === "linear") return linearWarmupDecay(base, t, warmup, total);
  // reduce_lr_on_plateau has no schedule of its own: the trainer scales the base with PlateauState
  if (kind === "constant" || kind === "reduce_lr_on_plateau") return base;
  if (kind === "warmup_stable_decay") return base * wsdFactor(t, warmup, total, kw);
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
    warmup_stable_decay: ["num_decay_steps", "num_stable_steps", "warmup_type", "decay_type", "min_lr_ratio", "num_cycles"],
    reduce_lr_on_plateau: ["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps"],
  };
  const words: Record<string, readonly string[]> = { warmup_type: ["linear", "cosine", "1-sqrt"], decay_type: ["linear", "cosine", "1-sqrt"], mode: ["min", "max"], threshold_mode: ["rel", "abs"] };
  for (const [k, v] of Object.entries(kw)) {
    if (!allowed[kind].includes(k)) throw new WeitiaoError(`--lr-scheduler-kwargs: ${kind} takes ${allowed[kind].length ? allowed[kind].join(", ") : "no arguments"}, not "${k}"`);
    if (words[k]) {
      if (!words[k].includes(v as string)) throw new WeitiaoError(`--lr-scheduler-kwargs: ${k} must be one of ${words[k].map((w) => `"${w}"`).join(", ")}, got ${JSON.stringify(v)}`);
    } else if (typeof v !== "number" || !Number.isFinite(v)) throw new WeitiaoError(`--lr-scheduler-kwargs: ${k} must be a number, got ${JSON.stringify(v)}`);
  }
  if (kind === "warmup_stable_decay" && !(Number.isInteger((kw as SchedulerKwargs).num_decay_steps) && (kw as SchedulerKwargs).num_decay_steps! >= 0)) {
    throw new WeitiaoError(`--lr-scheduler-kwargs: warmup_stable_decay needs num_decay_steps, a whole number of steps (e.g. '{"num_decay_steps": 100}')`);
  }
  const out = kw as SchedulerKwargs;
  if (kind === "polynomial" && !(base > (out.lr_end ?? 1e-7))) throw new WeitiaoError(`--lr-scheduler-kwargs: lr_end (${out.lr_end ?? 1e-7}) must be smaller than the learning rate (${base})`);
  if (kind === "cosine_with_min_lr" && (out.min_lr === undefined) === (out.min_lr_rate === undefined)) {
    throw new WeitiaoError("--lr-scheduler-kwargs: cosine_with_min_lr needs exactly one of min_lr and min_lr_rate");
  }
  return out;
}
