/**
 * Backend selection: the native addon when it was built and loads, otherwise the TypeScript reference with a
 * one-line notice saying how to get the fast path.
 */
import { WeitiaoError } from "../util/errors.js";
import { tsBackend } from "./ts.js";
import type { Backend } from "./types.js";
import { loadNativeBackend } from "./native.js";
import { profiled } from "./profile.js";
import { autoPrecision } from "./precision.js";

export type BackendName = "auto" | "native" | "typescript";
/** "auto" (train's default): bf16 where this CPU runs it faster, else fp32 (precision.ts). */
export type Precision = "fp32" | "bf16" | "auto";

export interface BackendOptions {
  backend?: BackendName;
  precision?: Precision;
  threads?: number;
  log?: (line: string) => void;
}

export function getBackend(opts: BackendOptions = {}): Backend {
  const backend = pickBackend(opts);
  return process.env.WEITIAO_PROFILE ? profiled(backend) : backend;
}

function pickBackend(opts: BackendOptions): Backend {
  const want = opts.backend ?? "auto";
  if (opts.precision === "auto") {
    if (want === "typescript") return tsBackend;
    const choice = autoPrecision(opts.threads);
    opts.log?.(`precision auto: ${choice.precision} (${choice.reason})`);
    return pickBackend({ ...opts, precision: choice.precision });
  }
  const precision = opts.precision ?? "fp32";
  if (want === "typescript") {
    if (precision !== "fp32") opts.log?.("notice: the TypeScript backend computes in fp32; --precision bf16 needs the native backend");
    return tsBackend;
  }
  const native = loadNativeBackend({ precision, threads: opts.threads });
  if (native.backend) return native.backend;
  if (precision === "bf16") {
    // The addon works but this CPU has no bf16 GEMMs: fp32 on the native backend beats the TypeScript one.
    const fp32 = loadNativeBackend({ precision: "fp32", threads: opts.threads });
    if (fp32.backend) {
      if (want === "native") throw new WeitiaoError(`--precision bf16: ${native.reason}`);
      opts.log?.(`notice: --precision bf16 unavailable (${native.reason}); computing in fp32 on the native backend`);
      return fp32.backend;
    }
  }
  if (want === "native") throw new WeitiaoError(`native backend unavailable: ${native.reason}`);
  opts.log?.(`notice: native backend unavailable (${native.reason}); using the TypeScript backend. ` +
    "For the fast path: apt-get install libdnnl-dev && npm rebuild weitiao");
  return tsBackend;
}

export { tsBackend };
export type { Backend };
