/** `weitiao bench` on a tiny model: every workload reports a positive time, and the round statistics are right. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { median, mlmPositions, paddedLengths, runBench, varlenLengths } from "../../src/bench/bench.js";
import { NATIVE, NATIVE_BF16 } from "../backends.js";

test("median: middle value, or the mean of the two middle values", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([5]), 5);
});

test("bench on a tiny model prints one JSON line per workload with positive timings", { skip: NATIVE ? false : "native addon not built" }, () => {
  const lines: string[] = [];
  const results = runBench({ steps: 1, batch: 2, seqLen: 8, inferBatch: 2, layers: 1, hidden: 64, compareTorch: false, out: (l) => lines.push(l) });
  const names = lines.map((l) => (JSON.parse(l) as { name: string }).name);
  const all = ["train_fp32", "train_bf16", "train_bf16_varlen", "train_bf16_padded", "train_mlm_fp32", "train_mlm_bf16", "train_lora_fp32", "head_only_cached", "infer_fp32", "infer_bf16", "peak_rss"];
  // A CPU without bf16 GEMMs (no AVX-512) leaves the bf16 workloads out.
  assert.deepEqual(names, NATIVE_BF16 ? all : all.filter((n) => !n.includes("bf16")));
  for (const r of results.filter((x) => x.name !== "peak_rss")) {
    assert.ok(r.median_s > 0 && Number.isFinite(r.samples_per_s), `${r.name}: ${r.median_s}`);
  }
  assert.ok((results.at(-1)!.peak_rss_mb as number) > 0);
});

test("the MLM workloads mask about 15% of the tokens, never a row's first or last", () => {
  const p = mlmPositions(16, 128);
  assert.ok(p.length > 0.13 * 16 * 126 && p.length < 0.17 * 16 * 126, `${p.length}`);
  for (const i of p) assert.ok(i % 128 !== 0 && i % 128 !== 127);
});

test("train_bf16_varlen's lengths: a different one every step, never below 1", () => {
  assert.deepEqual(varlenLengths(128, 9), [128, 120, 112, 124, 104, 128, 116, 108, 128]);
  assert.deepEqual(varlenLengths(10, 5), [10, 2, 1, 6, 1]);
});

test("train_bf16_padded's lengths: the first row full, then evenly down to a quarter", () => {
  const lengths = paddedLengths(128, 16);
  assert.deepEqual(lengths.slice(0, 4), [128, 122, 116, 109]);
  assert.equal(lengths.at(-1), 32);
  assert.equal(lengths.reduce((a, b) => a + b, 0), 1286);
  assert.deepEqual(paddedLengths(8, 1), [8]);
  assert.deepEqual(paddedLengths(3, 3), [3, 2, 1]);
});
