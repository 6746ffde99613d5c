/**
 * Dynamic padding, measured (a script, not a test): eight full fine-tuning steps of a random BERT-base at batch 16,
 * each batch a different sequence length (128, 120, 112, 124, 104, 128, 116, 108), printing per step its seconds,
 * system time and page faults, then the process's resident and huge-page memory. BENCHMARKS.md's sixth round.
 *
 *   npm run build && node scripts/bench-varlen.mjs [bf16|fp32]
 */
import { readFileSync } from "node:fs";

const dist = new URL("../dist/src/", import.meta.url);
const { getBackend } = await import(new URL("backend/index.js", dist).href);
const { BertForSequenceClassification } = await import(new URL("model/bert.js", dist).href);
const { parseBertConfig } = await import(new URL("model/config.js", dist).href);
const { crossEntropy, crossEntropyGrad } = await import(new URL("train/loss.js", dist).href);
const { AdamW, clipCoefficient } = await import(new URL("train/optimizer.js", dist).href);
const { Rng } = await import(new URL("util/rng.js", dist).href);

const precision = process.argv[2] ?? "bf16";
const config = parseBertConfig({ vocab_size: 21128, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
  intermediate_size: 3072, max_position_embeddings: 512, num_labels: 2 }, "bench-varlen");
const model = new BertForSequenceClassification(config, getBackend({ precision, backend: "native" }));
const rng = new Rng(1);
for (const s of model.params.specs) {
  const v = model.params.value(s.name);
  if (s.name.includes("LayerNorm")) v.fill(s.name.endsWith(".weight") ? 1 : 0);
  else if (s.name.endsWith(".bias")) v.fill(0);
  else for (let i = 0; i < v.length; i++) v[i] = (rng.next() * 2 - 1) * 0.0346; // std 0.02
}
const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
const minorFaults = () => Number(readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ")[7]);
const B = 16;
let total = 0;
for (const [step, T] of [128, 120, 112, 124, 104, 128, 116, 108].entries()) {
  const n = B * T;
  const inputIds = Int32Array.from({ length: n }, () => 1000 + Math.floor(rng.next() * 20000));
  const input = { inputIds, attentionMask: new Int32Array(n).fill(1), tokenTypeIds: new Int32Array(n), batch: B, seqLen: T };
  const labels = Int32Array.from({ length: B }, (_, i) => i % 2);
  const t = performance.now(), cpu = process.cpuUsage(), faults = minorFaults();
  model.zeroGrad();
  const out = model.forward(input, { train: true, dropoutSeed: step });
  const { probs } = crossEntropy(model.backend, model.dtype, out.logits, labels, B, 2);
  model.backward(out.cache, crossEntropyGrad(model.backend, model.dtype, probs, labels, B, 2, 1 / B));
  opt.step(2e-5, undefined, clipCoefficient(model, 1).coef);
  const seconds = (performance.now() - t) / 1000;
  total += seconds;
  console.log(JSON.stringify({ step: step + 1, seq: T, seconds, system_s: process.cpuUsage(cpu).system / 1e6, page_faults: minorFaults() - faults }));
}
const mem = readFileSync("/proc/self/smaps_rollup", "utf8");
const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(mem)?.[1] ?? 0);
console.log(JSON.stringify({ total_s: total, rss_mb: kb("Rss") / 1024, anon_huge_mb: kb("AnonHugePages") / 1024 }));
