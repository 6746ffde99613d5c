/**
 * `--precision auto`: bf16 where this CPU runs bf16 GEMMs faster than fp32, else fp32. CPU flags cannot tell the
 * cases apart (an Intel Xeon with AVX512_BF16 but no AMX runs bf16 GEMMs slower than fp32; AMX and AMD Zen 4 run them
 * faster), so a short calibration times one training-shaped Linear (forward and backward) both ways; the choice is
 * cached per CPU, thread count and weitiao version.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, homedir } from "node:os";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { loadNativeBackend, nativeInfo } from "./native.js";
import type { Backend } from "./types.js";

export interface PrecisionChoice {
  precision: "fp32" | "bf16";
  /** Why, in a few words, for the log line. */
  reason: string;
}

/** bf16 must beat fp32 by this factor to be chosen (its conversions and fp32 master weights cost something too). */
const MARGIN = 0.85;

const VERSION = (JSON.parse(readFileSync(fileURLToPath(new URL("../../../package.json", import.meta.url)), "utf8")) as { version: string }).version;

/** The cached choices; a missing or broken file is an empty cache (rewritten whole after the next calibration). */
function readCache(file: string): Record<string, PrecisionChoice> {
  try {
    const v = JSON.parse(readFileSync(file, "utf8")) as unknown;
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, PrecisionChoice>) : {};
  } catch {
    return {};
  }
}

function cacheFile(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "weitiao", "precision.json");
}

/** The seconds of a Linear's forward and backward at BERT-base's feed-forward shape (best of 3, after a warm-up). */
function timeLinear(backend: Backend): number {
  const rows = 1024, inF = 768, outF = 3072;
  const fill = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 0.02);
  const x = fill(rows * inF), w = fill(outF * inF), b = new Float32Array(outF), y = new Float32Array(rows * outF);
  const dy = fill(rows * outF), dx = new Float32Array(rows * inF), dw = new Float32Array(outF * inF), db = new Float32Array(outF);
  const once = (): void => {
    backend.linearForward(x, w, b, y, rows, inF, outF);
    backend.linearBackward(dy, x, w, dx, dw, db, rows, inF, outF, { overwriteGrads: true });
  };
  once();
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = process.hrtime.bigint();
    once();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return best;
}

/** Decide (or read the cached decision) for this machine; WEITIAO_AUTO_PRECISION=fp32|bf16 pins it (tests, CI). */
export function autoPrecision(threads: number | undefined): PrecisionChoice {
  const pinned = process.env.WEITIAO_AUTO_PRECISION;
  if (pinned === "fp32" || pinned === "bf16") return { precision: pinned, reason: "pinned by WEITIAO_AUTO_PRECISION" };
  const info = nativeInfo();
  if (!info) return { precision: "fp32", reason: "no native backend" };
  if (!info.bf16Supported) return { precision: "fp32", reason: "this CPU has no bf16 GEMMs" };
  const key = `${cpus()[0]?.model ?? "cpu"}|${cpus().length} cores|threads ${threads ?? "all"}|weitiao ${VERSION}`;
  const file = cacheFile();
  const all = readCache(file);
  const cached = all[key];
  if (cached && (cached.precision === "fp32" || cached.precision === "bf16") && typeof cached.reason === "string") {
    return { ...cached, reason: `${cached.reason}; cached in ${file}` };
  }
  const fp32 = loadNativeBackend({ precision: "fp32", threads }).backend;
  const bf16 = loadNativeBackend({ precision: "bf16", threads }).backend;
  if (!fp32 || !bf16) return { precision: "fp32", reason: "bf16 unavailable" };
  const a = timeLinear(fp32);
  const b = timeLinear(bf16);
  const choice: PrecisionChoice = b < MARGIN * a
    ? { precision: "bf16", reason: `a calibration GEMM ran ${(a / b).toFixed(2)}× faster in bf16 than in fp32 on this CPU` }
    : { precision: "fp32", reason: `a calibration GEMM ran ${b < a ? `only ${(a / b).toFixed(2)}× faster` : `${(b / a).toFixed(2)}× slower`} in bf16 than in fp32 on this CPU` };
  try {
    mkdirSync(join(file, ".."), { recursive: true });
    all[key] = choice;
    writeFileSync(`${file}.tmp-${process.pid}`, JSON.stringify(all, null, 2) + "\n");
    renameSync(`${file}.tmp-${process.pid}`, file);
  } catch {
    /* a read-only home: calibrate again next time */
  }
  return choice;
}
