/** Shared test helpers: fixture paths and the error measures of test/fixtures/PROVENANCE.md. */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import type { FArray } from "../src/backend/types.js";
import type { EncodedExample } from "../src/data/dataset.js";
import { SafetensorsFile } from "../src/io/safetensors.js";
import type { ModelInput } from "../src/model/task-model.js";

// Train's default precision is auto (bf16 where this CPU runs it faster): the suite pins auto's choice to fp32 so
// that parity and bit-for-bit checks hold on every machine (test/backend/precision.test.ts tests auto itself).
process.env.WEITIAO_AUTO_PRECISION ??= "fp32";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURES = join(ROOT, "test", "fixtures");
export const TINY = join(FIXTURES, "bert-tiny-chinese");
export const REAL = join(FIXTURES, "reference", "real-tokens");
export const HF = join(FIXTURES, "reference", "hf-transformers");
export const CLI = join(ROOT, "dist", "src", "cli", "bin.js");

const tempDirs: string[] = [];
// Each test file runs in its own process: its temporary directories go when it exits, pass or fail.
process.once("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix = "weitiao-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** ‖a − b‖₂ / ‖b‖₂ over the entries where `keep(i)` (all by default). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, keep: (i: number) => boolean = () => true): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!keep(i)) continue;
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function toF64(a: FArray): Float64Array {
  return Float64Array.from(a);
}

/** The reference inputs of a fixture set's forward.safetensors: model input, per-row examples, labels, logits. */
export function referenceData(dir: string): { input: ModelInput; rows: EncodedExample[]; labels: Int32Array; logits: Float32Array } {
  const f = SafetensorsFile.open(join(dir, "forward.safetensors"));
  try {
    const [B, T] = f.info("input_ids").shape as [number, number];
    const inputIds = f.int("input_ids"), attentionMask = f.int("attention_mask"), tokenTypeIds = f.int("token_type_ids");
    const labels = f.int("labels");
    const rows = Array.from({ length: B }, (_, i): EncodedExample => ({
      inputIds: [...inputIds.subarray(i * T, i * T + T)], tokenTypeIds: [...tokenTypeIds.subarray(i * T, i * T + T)],
      attentionMask: [...attentionMask.subarray(i * T, i * T + T)], label: labels[i]!,
    }));
    return { input: { inputIds, attentionMask, tokenTypeIds, batch: B, seqLen: T }, rows, labels, logits: f.float("logits") };
  } finally {
    f.close();
  }
}

/** trainer_state.json's per-step entries (HF's log_history also holds evaluations and a closing run summary). */
export function stepLogs<T extends object>(history: T[]): (T & { step: number; loss: number; learning_rate: number; grad_norm: number })[] {
  return history.filter((e) => "loss" in e) as (T & { step: number; loss: number; learning_rate: number; grad_norm: number })[];
}
