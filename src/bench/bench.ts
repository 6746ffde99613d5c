/**
 * `weitiao bench`: a random BERT-base (vocab 21128, 12 layers, hidden 768; or roberta-base's shape with `family`) at batch 16 / seq 128, timed per
 * step: full fine-tuning in fp32 and bf16, head-only epochs after the first (cached encoder features), and
 * inference at batch 64. Prints JSON lines; with `compareTorch` it also runs scripts/bench_torch.py (PyTorch on
 * the same machine, same workload) and prints our/torch speed ratios from the same run.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { getBackend, type Precision } from "../backend/index.js";
import { nativeInfo } from "../backend/native.js";
import { TaskModel, type ModelInput } from "../model/task-model.js";
import { LORA_DEFAULTS, type LoraSpec, resolveLora } from "../model/lora.js";
import { paramLayout } from "../model/params.js";
import { trainablePredicate } from "../train/strategy.js";
import { parseBertConfig } from "../model/config.js";
import { crossEntropy, crossEntropyGrad } from "../train/loss.js";
import { AdamW, clipCoefficient } from "../train/optimizer.js";
import { Rng, hash32 } from "../util/rng.js";
import { kernelReport, kernelStats } from "../backend/profile.js";

export interface BenchOptions {
  steps: number;
  batch: number;
  seqLen: number;
  inferBatch: number;
  layers: number;
  hidden: number;
  /** The encoder's shape: bert (BERT-base, the default) or roberta (roberta-base: vocab 50265, positions after padding, no pooler, dense-tanh head). */
  family?: BenchFamily;
  /** text-classification (default), or token-classification: the NER head (9 tags) on every token, no pooler. */
  task?: BenchTask;
  threads?: number;
  compareTorch: boolean;
  /** With compareTorch: repeat ours-then-torch this many times and also print each ratio's median over rounds. */
  rounds?: number;
  only?: string[];
  out?: (line: string) => void;
}

export interface BenchResult {
  name: string;
  median_s: number;
  samples_per_s: number;
  steps: number;
  [k: string]: unknown;
}

export type BenchFamily = "bert" | "roberta";
export type BenchTask = "text-classification" | "token-classification";

/** The NER workloads' tags: a fixed pattern over 9 tags (CoNLL's), −100 at each row's first and last token. */
export function tokenLabels(batch: number, seqLen: number): Int32Array {
  return Int32Array.from({ length: batch * seqLen }, (_, i) => (i % seqLen === 0 || i % seqLen === seqLen - 1 ? -100 : (i * 7) % 9));
}

/**
 * The MLM workloads' masked positions: flat position i (not a row's first or last token) is masked when
 * (i · 7919) mod 100 < 15, about 15% of the tokens. scripts/bench_torch.py masks the same positions.
 */
export function mlmPositions(batch: number, seqLen: number): Int32Array {
  return Int32Array.from({ length: batch * seqLen }, (_, i) => i).filter((i) => i % seqLen !== 0 && i % seqLen !== seqLen - 1 && (i * 7919) % 100 < 15);
}

/** Vocabulary size and padding id of each bench family (the random ids are drawn from 1000 up). */
const FAMILY_SHAPES: Record<BenchFamily, { vocab: number; padId: number; config: Record<string, unknown> }> = {
  bert: { vocab: 21128, padId: 0, config: { model_type: "bert", max_position_embeddings: 512 } },
  roberta: {
    vocab: 50265, padId: 1,
    config: { model_type: "roberta", architectures: ["RobertaForSequenceClassification"], max_position_embeddings: 514, type_vocab_size: 1, pad_token_id: 1, layer_norm_eps: 1e-5 },
  },
};

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function randomInput(rng: Rng, batch: number, seqLen: number, vocab: number): { input: ModelInput; labels: Int32Array } {
  const n = batch * seqLen;
  const inputIds = new Int32Array(n);
  for (let i = 0; i < n; i++) inputIds[i] = 1000 + Math.floor(rng.next() * (vocab - 1000));
  for (let b = 0; b < batch; b++) {
    inputIds[b * seqLen] = 101;
    inputIds[b * seqLen + seqLen - 1] = 102;
  }
  return {
    input: { inputIds, attentionMask: new Int32Array(n).fill(1), tokenTypeIds: new Int32Array(n), batch, seqLen },
    labels: Int32Array.from({ length: batch }, (_, i) => i % 2),
  };
}

/**
 * The sequence lengths of train_bf16_varlen's warm-up and timed steps: seq, then seq − 8, − 16, − 4, − 24, − 0, − 12,
 * − 20, repeating (at least 1). scripts/bench_torch.py uses the same list.
 */
export function varlenLengths(seqLen: number, count: number): number[] {
  const offsets = [0, 8, 16, 4, 24, 0, 12, 20];
  return Array.from({ length: count }, (_, i) => Math.max(1, seqLen - offsets[i % offsets.length]!));
}

/**
 * train_bf16_padded's real tokens per row: from seq down to seq/4 in even steps, the rest padding (at batch 16 and
 * seq 128: 128, 122, …, 32, 62% real tokens, like a batch of reviews padded to its longest). The same in
 * scripts/bench_torch.py.
 */
export function paddedLengths(seqLen: number, batch: number): number[] {
  const shortest = Math.max(1, Math.floor(seqLen / 4));
  return Array.from({ length: batch }, (_, i) => (batch > 1 ? seqLen - Math.floor((i * (seqLen - shortest)) / (batch - 1)) : seqLen));
}

/** Pads row b of input after lengths[b] tokens (id 0, mask 0; [SEP] moved to the last real token). */
function padRows(input: ModelInput, lengths: number[], padId: number): ModelInput {
  const T = input.seqLen;
  const inputIds = Int32Array.from(input.inputIds);
  const attentionMask = Int32Array.from(input.attentionMask);
  lengths.forEach((n, b) => {
    inputIds[b * T + n - 1] = 102;
    inputIds.fill(padId, b * T + n, b * T + T);
    attentionMask.fill(0, b * T + n, b * T + T);
  });
  return { ...input, inputIds, attentionMask };
}

export function makeModel(opts: Pick<BenchOptions, "layers" | "hidden" | "threads" | "family"> & { task?: BenchTask | "fill-mask" }, precision: Precision, lora: LoraSpec | null = null): TaskModel {
  const shape = FAMILY_SHAPES[opts.family ?? "bert"];
  const config = parseBertConfig({
    vocab_size: shape.vocab, hidden_size: opts.hidden, num_hidden_layers: opts.layers, num_attention_heads: opts.hidden / 64,
    intermediate_size: opts.hidden * 4, num_labels: opts.task === "token-classification" ? 9 : 2, ...shape.config,
  }, "bench");
  const model = new TaskModel(config, getBackend({ precision, threads: opts.threads, backend: "native" }), "float32", opts.task, lora);
  // Timing needs random weights of the right scale, not HF's exact normal init: a uniform hash fill with the same
  // variance (std 0.02) takes a fraction of a second where 110M Box–Muller draws take many.
  let state = 0x9e3779b9;
  const halfWidth = config.initializer_range * Math.sqrt(3);
  for (const s of model.params.specs) {
    const v = model.params.value(s.name);
    if (s.name.includes("LayerNorm")) v.fill(s.name.endsWith(".weight") ? 1 : 0);
    else if (s.name.endsWith(".bias")) v.fill(0);
    else {
      for (let i = 0; i < v.length; i++) {
        state = (state + 0x6d2b79f5) | 0;
        v[i] = ((hash32(state) / 4294967296) * 2 - 1) * halfWidth;
      }
    }
  }
  return model;
}

function timeSteps(steps: number, fn: () => void): number[] {
  fn(); // warm-up: primitive creation, page faults
  kernelStats.clear(); // with WEITIAO_PROFILE: profile the timed steps only
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  return times;
}

/** The optimizer every bench workload trains with (AdamW, weight decay 0.01). */
export function makeOptimizer(model: TaskModel): AdamW {
  return new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
}

export function trainStep(model: TaskModel, opt: AdamW, input: ModelInput, labels: Int32Array, step: number): void {
  model.zeroGrad();
  const out = model.forward(input, { train: true, dropoutSeed: step });
  // The head's loss: cross-entropy over the rows (classification) or the labelled tokens (NER), averaged
  const t = model.head.loss(model.backend, model.dtype, out.logits, { labels, targets: null }, out.logits.length / model.head.outputs, 0.5);
  model.backward(out.cache!, t.grad(1 / t.count));
  opt.step(2e-5, undefined, clipCoefficient(model, 1).coef);
}

export function runBench(opts: BenchOptions): BenchResult[] {
  const out = opts.out ?? ((l: string) => console.log(l));
  const rounds = opts.compareTorch ? Math.max(1, opts.rounds ?? 1) : 1;
  const ratios = new Map<string, number[]>();
  let results: BenchResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Ours and PyTorch alternate, so a slow spell of the shared machine hits both sides of some ratios, not one side
    // of all of them; the median over rounds is the figure to quote.
    const tag = rounds > 1 ? { round } : {};
    const lineOut = (l: string): void => out(rounds > 1 ? JSON.stringify({ ...JSON.parse(l), ...tag }) : l);
    results = measureOurs(opts, lineOut);
    if (!opts.compareTorch) break;
    // Peak RSS is the process's high-water mark: after round 1 it includes earlier rounds' models not yet collected.
    for (const r of compareWithTorch(opts, results, lineOut, round === 1)) ratios.set(r.name, [...(ratios.get(r.name) ?? []), r.value]);
  }
  if (rounds > 1) {
    for (const [name, xs] of ratios) {
      out(JSON.stringify({ name: `${name}_median`, median: median(xs), min: Math.min(...xs), max: Math.max(...xs), rounds: xs }));
    }
  }
  return results;
}

/** Our side of one round: every selected workload, one JSON line each. */
function measureOurs(opts: BenchOptions, out: (line: string) => void): BenchResult[] {
  const results: BenchResult[] = [];
  // Without bf16 GEMMs (a CPU without AVX-512) the bf16 workloads are left out rather than timed as fp32.
  const bf16 = nativeInfo()?.bf16Supported ?? false;
  const want = (n: string): boolean => (!opts.only || opts.only.includes(n)) && (bf16 || !n.includes("bf16"));
  const emit = (r: BenchResult): void => {
    if (process.env.WEITIAO_PROFILE && kernelStats.size) {
      // Seconds per step spent in each kernel (JSON), from the timed steps of this workload.
      r.kernels = Object.fromEntries(kernelReport().map((k) => [k.kernel, Number((k.seconds / opts.steps).toFixed(4))]));
      kernelStats.clear();
    }
    results.push(r);
    out(JSON.stringify(r));
  };
  const rng = new Rng(1);
  const { vocab, padId } = FAMILY_SHAPES[opts.family ?? "bert"];
  const ner = opts.task === "token-classification";
  const first = randomInput(rng, opts.batch, opts.seqLen, vocab);
  const input = first.input;
  const labels = ner ? tokenLabels(opts.batch, opts.seqLen) : first.labels;
  /** Median seconds of a full fine-tuning step of a fresh model; step s (0: the warm-up) trains on batchOf(s). */
  const timeTraining = (precision: Precision, batchOf: (step: number) => { input: ModelInput; labels: Int32Array }): number => {
    const model = makeModel(opts, precision);
    const opt = makeOptimizer(model);
    let step = 0;
    return median(timeSteps(opts.steps, () => {
      const b = batchOf(step);
      trainStep(model, opt, b.input, b.labels, step++);
    }));
  };

  for (const precision of ["fp32", "bf16"] as const) {
    if (!want(`train_${precision}`)) continue;
    const m = timeTraining(precision, () => ({ input, labels }));
    emit({ name: `train_${precision}`, median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: opts.seqLen });
  }

  if (want("train_bf16_varlen")) {
    // Dynamic padding: each batch is padded to its own longest row, so consecutive steps see different lengths.
    const lengths = varlenLengths(opts.seqLen, opts.steps + 1);
    const batches = lengths.map((T) => {
      const b = randomInput(rng, opts.batch, T, vocab);
      return ner ? { input: b.input, labels: tokenLabels(opts.batch, T) } : b;
    });
    const m = timeTraining("bf16", (step) => batches[step]!);
    emit({ name: "train_bf16_varlen", median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: lengths.join(",") });
  }

  if (want("train_bf16_padded")) {
    // One batch padded to its longest row (PyTorch computes the padding rows; we leave them out, see task-model.ts)
    const lengths = paddedLengths(opts.seqLen, opts.batch);
    const padded = padRows(input, lengths, padId);
    const m = timeTraining("bf16", () => ({ input: padded, labels }));
    const realTokens = lengths.reduce((sum, n) => sum + n, 0) / (opts.batch * opts.seqLen);
    emit({ name: "train_bf16_padded", median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: opts.seqLen, real_tokens: Number(realTokens.toFixed(3)) });
  }

  for (const precision of ["fp32", "bf16"] as const) {
    // Masked-LM pretraining (BERT-base's shape): 15% of the tokens masked; only they go through the vocabulary projection
    if (!want(`train_mlm_${precision}`) || (opts.family ?? "bert") !== "bert") continue;
    const model = makeModel({ ...opts, task: "fill-mask" }, precision);
    const opt = makeOptimizer(model);
    const selected = mlmPositions(opts.batch, opts.seqLen);
    const mlmInput = { ...input, inputIds: Int32Array.from(input.inputIds), selected };
    const mlmLabels = Int32Array.from(selected, (p) => input.inputIds[p]!);
    for (const p of selected) mlmInput.inputIds[p] = 103;
    let step = 0;
    const m = median(timeSteps(opts.steps, () => trainStep(model, opt, mlmInput, mlmLabels, step++)));
    emit({ name: `train_mlm_${precision}`, median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: opts.seqLen, masked: selected.length });
  }

  if (want("train_lora_fp32")) {
    // LoRA as PEFT's default for BERT: r 8, alpha 8 on query and value; the adapters and the head train, the base is frozen
    const base = makeModel(opts, "fp32");
    const spec = resolveLora(base.config.model_type, base.task, paramLayout(base.config, base.head), base.head.linears.map((l) => l.name), { ...LORA_DEFAULTS, targetModules: ["query", "value"] });
    const model = makeModel(opts, "fp32", { ...spec, baseModel: "bench" });
    model.setTrainable(trainablePredicate("lora", model.numLayers, 1, undefined, model.lora));
    const opt = makeOptimizer(model);
    let step = 0;
    const m = median(timeSteps(opts.steps, () => trainStep(model, opt, input, labels, step++)));
    emit({ name: "train_lora_fp32", median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: opts.seqLen });
  }

  if ((want("head_only") || want("head_only_cached")) && !ner) {
    // Epochs after the first: the frozen encoder's pooled features are cached, only the classifier trains.
    const model = makeModel(opts, "fp32");
    model.setTrainable((s) => s.level === model.numLayers + 2);
    const pooled = model.encode(input, { train: false }).pooled;
    const opt = makeOptimizer(model);
    let step = 0;
    const C = model.config.num_labels;
    const times = timeSteps(opts.steps, () => {
      model.zeroGrad();
      const head = model.classify(pooled, input.batch, true, step++);
      const { probs } = crossEntropy(model.backend, model.dtype, head.logits, labels, input.batch, C);
      model.classifyBackward(crossEntropyGrad(model.backend, model.dtype, probs, labels, input.batch, C, 1 / input.batch), head.cache, false);
      opt.step(2e-5, undefined, clipCoefficient(model, 1).coef);
    });
    const m = median(times);
    emit({ name: "head_only_cached", median_s: m, samples_per_s: opts.batch / m, steps: opts.steps, batch: opts.batch, seq: opts.seqLen });
  }

  for (const precision of ["fp32", "bf16"] as const) {
    if (!want(`infer_${precision}`)) continue;
    const model = makeModel(opts, precision);
    const inf = randomInput(rng, opts.inferBatch, opts.seqLen, vocab);
    const times = timeSteps(opts.steps, () => void model.forward(inf.input, { train: false }));
    const m = median(times);
    emit({ name: `infer_${precision}`, median_s: m, samples_per_s: opts.inferBatch / m, steps: opts.steps, batch: opts.inferBatch, seq: opts.seqLen });
  }
  emit({ name: "peak_rss", median_s: 0, samples_per_s: 0, steps: 0, peak_rss_mb: process.resourceUsage().maxRSS / 1024 });
  return results;
}

const TORCH_SCRIPT = fileURLToPath(new URL("../../../scripts/bench_torch.py", import.meta.url));

/** Run the PyTorch twin of this benchmark and print ratios (our speed / torch speed; RSS ours / torch); returns them. */
function compareWithTorch(opts: BenchOptions, ours: BenchResult[], out: (l: string) => void, compareRss: boolean): { name: string; value: number }[] {
  const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const env = { ...process.env, OPENBLAS_CORETYPE: "SkylakeX" }; // the best torch can do here, for its process only
  const args = [TORCH_SCRIPT, "--steps", String(opts.steps), "--batch", String(opts.batch), "--seq", String(opts.seqLen),
    "--infer-batch", String(opts.inferBatch), "--layers", String(opts.layers), "--hidden", String(opts.hidden), "--family", opts.family ?? "bert", "--task", opts.task ?? "text-classification"];
  if (opts.threads) args.push("--threads", String(opts.threads));
  if (opts.only) args.push("--only", opts.only.join(","));
  const r = spawnSync(python, args, { env, encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    out(JSON.stringify({ name: "torch", error: (r.stderr || String(r.error)).trim().split("\n").slice(-1)[0] }));
    return [];
  }
  const ratios: { name: string; value: number }[] = [];
  const emitRatio = (r: { name: string; [k: string]: number | string }): void => {
    ratios.push({ name: r.name, value: (r.speedup_vs_torch ?? r.ours_over_torch) as number });
    out(JSON.stringify(r));
  };
  const theirs = new Map<string, BenchResult>();
  for (const line of r.stdout.trim().split("\n")) {
    const t = JSON.parse(line) as BenchResult;
    theirs.set(t.name, t);
    out(JSON.stringify({ ...t, name: `torch_${t.name}` }));
  }
  const pairs: [string, string][] = [
    ["train_fp32", "train_fp32"], ["train_bf16", "train_bf16_autocast"], ["train_bf16_varlen", "train_bf16_autocast_varlen"],
    ["train_bf16_padded", "train_bf16_autocast_padded"], ["head_only_cached", "head_only"], ["train_lora_fp32", "train_lora_fp32"],
    ["train_mlm_fp32", "train_mlm_fp32"], ["train_mlm_bf16", "train_mlm_bf16_autocast"],
    ["infer_fp32", "infer_fp32"], ["infer_bf16", "infer_bf16_autocast"],
  ];
  for (const [mine, torchName] of pairs) {
    const a = ours.find((x) => x.name === mine);
    const b = theirs.get(torchName);
    if (a && b) emitRatio({ name: `ratio_${mine}`, speedup_vs_torch: b.median_s / a.median_s, ours_s: a.median_s, torch_s: b.median_s, torch_workload: torchName });
  }
  const rssOurs = ours.find((x) => x.name === "peak_rss")?.peak_rss_mb as number | undefined;
  const rssTorch = theirs.get("peak_rss")?.peak_rss_mb as number | undefined;
  if (compareRss && rssOurs && rssTorch) emitRatio({ name: "ratio_peak_rss", ours_over_torch: rssOurs / rssTorch, ours_mb: rssOurs, torch_mb: rssTorch });
  return ratios;
}
