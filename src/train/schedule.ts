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
  if (steps !== undefined && steps > 0) return steps;
  return ratio ? Math.ceil(total * ratio) : 0;
}
