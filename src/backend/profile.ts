/**
 * Opt-in kernel profiler (WEITIAO_PROFILE=1): wraps a backend so every call's wall time is added up per kernel,
 * for BENCHMARKS.md's "what limits each number". Off by default: zero cost when unused.
 */
import type { Backend } from "./types.js";

export interface KernelStats {
  calls: number;
  seconds: number;
}

export const kernelStats = new Map<string, KernelStats>();

export function profiled(backend: Backend): Backend {
  const wrapped: Record<string, unknown> = { ...backend };
  for (const [name, fn] of Object.entries(backend)) {
    if (typeof fn !== "function") continue;
    wrapped[name] = (...args: unknown[]) => {
      const t = process.hrtime.bigint();
      const r = (fn as (...a: unknown[]) => unknown)(...args);
      const s = kernelStats.get(name) ?? { calls: 0, seconds: 0 };
      s.calls++;
      s.seconds += Number(process.hrtime.bigint() - t) / 1e9;
      kernelStats.set(name, s);
      return r;
    };
  }
  return wrapped as unknown as Backend;
}

/** Per-kernel totals, largest first, with each one's share of the sum. */
export function kernelReport(): { kernel: string; calls: number; seconds: number; share: number }[] {
  const total = [...kernelStats.values()].reduce((a, s) => a + s.seconds, 0);
  return [...kernelStats.entries()]
    .map(([kernel, s]) => ({ kernel, calls: s.calls, seconds: s.seconds, share: total ? s.seconds / total : 0 }))
    .sort((a, b) => b.seconds - a.seconds);
}
