/**
 * Dynamic padding, measured (a script, not a test): eight full fine-tuning steps of `weitiao bench`'s random BERT-base
 * at batch 16, each batch a different sequence length (train_bf16_varlen's: 128, 120, 112, 124, 104, 128, 116, 108),
 * printing per step its seconds, system time and page faults, then the process's resident and huge-page memory.
 * BENCHMARKS.md's sixth round.
 *
 *   npm run build && node scripts/bench-varlen.mjs [bf16|fp32]
 */
import { readFileSync } from "node:fs";

const dist = new URL("../dist/src/", import.meta.url);
const { makeModel, makeOptimizer, randomInput, trainStep, varlenLengths } = await import(new URL("bench/bench.js", dist).href);
const { Rng } = await import(new URL("util/rng.js", dist).href);

const precision = process.argv[2] ?? "bf16";
const model = makeModel({ layers: 12, hidden: 768 }, precision);
const opt = makeOptimizer(model);
const rng = new Rng(1);
const minorFaults = () => Number(readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ")[7]);
let total = 0;
for (const [step, T] of varlenLengths(128, 8).entries()) {
  const { input, labels } = randomInput(rng, 16, T, 21128);
  const t = performance.now(), cpu = process.cpuUsage(), faults = minorFaults();
  trainStep(model, opt, input, labels, step);
  const seconds = (performance.now() - t) / 1000;
  total += seconds;
  console.log(JSON.stringify({ step: step + 1, seq: T, seconds, system_s: process.cpuUsage(cpu).system / 1e6, page_faults: minorFaults() - faults }));
}
const mem = readFileSync("/proc/self/smaps_rollup", "utf8");
const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(mem)?.[1] ?? 0);
console.log(JSON.stringify({ total_s: total, rss_mb: kb("Rss") / 1024, anon_huge_mb: kb("AnonHugePages") / 1024 }));
