/**
 * Loading a HF model folder into TaskModel and saving one that Python `transformers`
 * loads unchanged. Name handling follows HF's loader: legacy LayerNorm gamma/beta, checkpoints of a plain
 * BertModel without the `bert.` prefix, pretraining heads (`cls.*`) and `position_ids` buffers ignored; missing
 * weights initialised as HF's _init_weights does and reported like HF's "newly initialized" warning.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Backend, FArray } from "../backend/types.js";
import { TaskModel } from "../model/task-model.js";
import { architectureOf, type BertConfig, configToJson, familyOfConfig, labelNames, parseBertConfig } from "../model/config.js";
import { bert } from "../model/families/bert.js";
import { resolveTask, type Task } from "../model/task.js";
import type { Family } from "../model/families/family.js";
import { asFloat32, type DType, paramLayout } from "../model/params.js";
import { type LoraOptions, resolveLora } from "../model/lora.js";
import { headFor } from "../model/heads/index.js";
import { adapterParams, initLora, loadAdapterWeights, readAdapterConfig, writeAdapterFiles } from "./adapter.js";
import { classifierLinears } from "../model/heads/classification.js";
import { WeitiaoError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "./safetensors.js";
import { hasModelFile, modelFile } from "./model-file.js";
import { torchSource } from "./torch.js";

/** A set of named tensors in a checkpoint, read on demand. */
export interface TensorSource {
  names(): string[];
  shape(name: string): number[];
  read(name: string): Float32Array;
  /** read(), written into `out` (sources that can skip the intermediate copy do). */
  readInto?(name: string, out: FArray): void;
  close(): void;
}

/** One or several safetensors files (HF's sharded layout has an index naming the file of each tensor). */
export function safetensorsSource(files: string[]): TensorSource {
  return concatSources(files.map((path): TensorSource => {
    const f = SafetensorsFile.open(path);
    return { names: () => f.names(), shape: (n) => f.info(n).shape, read: (n) => f.float(n), readInto: (n, out) => f.floatInto(n, out), close: () => f.close() };
  }));
}

export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"];

/** Open one weights file: safetensors, or a torch.save checkpoint (.bin/.pth/.pt) through the restricted reader. */
export function openWeightsFile(file: string): TensorSource {
  if (!existsSync(file)) throw new WeitiaoError(`${file}: weights file not found`);
  return file.endsWith(".safetensors") ? safetensorsSource([file]) : torchSource(file);
}

/** A tensor of `source` written into `out`, without an intermediate copy where the source can. */
function readInto(source: TensorSource, name: string, out: FArray): void {
  if (source.readInto) source.readInto(name, out);
  else out.set(source.read(name));
}

/** Several sources as one: the shards of a sharded checkpoint (each tensor is read from the shard holding it). */
function concatSources(sources: TensorSource[]): TensorSource {
  const owner = new Map<string, TensorSource>();
  for (const s of sources) for (const n of s.names()) owner.set(n, s);
  const get = (n: string): TensorSource => {
    const s = owner.get(n);
    if (!s) throw new WeitiaoError(`checkpoint has no tensor ${n}`);
    return s;
  };
  return {
    names: () => [...owner.keys()],
    shape: (n) => get(n).shape(n),
    read: (n) => get(n).read(n),
    readInto: (n, out) => readInto(get(n), n, out),
    close: () => sources.forEach((s) => s.close()),
  };
}

function readIndex(index: string, dir: string): string[] {
  let parsed: { weight_map?: Record<string, string> };
  try {
    parsed = JSON.parse(readFileSync(index, "utf8"));
  } catch (e) {
    throw new WeitiaoError(`${index}: not valid JSON (${(e as Error).message})`);
  }
  if (!parsed.weight_map) throw new WeitiaoError(`${index}: no weight_map`);
  return [...new Set(Object.values(parsed.weight_map))].map((f) => {
    const p = resolve(dir, f);
    if (dirname(p) !== resolve(dir)) throw new WeitiaoError(`${index}: shard ${f} lies outside the model folder`);
    modelFile(dir, basename(p));
    if (!existsSync(p)) throw new WeitiaoError(`${index}: shard ${f} is missing`);
    return p;
  });
}

/** Find the weights of a model folder, preferring safetensors as HF does. */
export function openWeights(dir: string): { source: TensorSource; description: string } {
  const single = modelFile(dir, "model.safetensors");
  if (existsSync(single)) return { source: safetensorsSource([single]), description: "model.safetensors" };
  const index = modelFile(dir, "model.safetensors.index.json");
  if (existsSync(index)) {
    const shards = readIndex(index, dir);
    return { source: safetensorsSource(shards), description: `${shards.length} safetensors shards` };
  }
  const bin = modelFile(dir, "pytorch_model.bin");
  if (existsSync(bin)) return { source: torchSource(bin), description: "pytorch_model.bin" };
  const binIndex = modelFile(dir, "pytorch_model.bin.index.json");
  if (existsSync(binIndex)) {
    const shards = readIndex(binIndex, dir);
    return { source: concatSources(shards.map((shard) => torchSource(shard))), description: `${shards.length} pytorch_model.bin shards` };
  }
  throw new WeitiaoError(
    `${dir}: no model weights found (expected model.safetensors, model.safetensors.index.json or pytorch_model.bin)`,
  );
}

export function readConfig(dir: string): BertConfig {
  const path = modelFile(dir, "config.json");
  if (!existsSync(path)) throw new WeitiaoError(`${dir}: no config.json (is this a HF model folder?)`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new WeitiaoError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseBertConfig(raw, path);
}

/**
 * Map a checkpoint name to the task model's HF name, or null to ignore it: TF-era gamma/beta spellings, buffers
 * (position_ids), other heads (BERT's cls.*, RoBERTa's lm_head.*, …); a bare encoder's names get the family prefix.
 */
export function canonicalName(name: string, family: Family = bert, headModules = classifierLinears(family.classifier, 0, 0).map((m) => m.name)): string | null {
  let n = name.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias");
  const head = headModules.some((module) => n.startsWith(`${module}.`));
  if (n.endsWith("position_ids") || n.endsWith("token_type_ids") || (!head && family.foreign.test(n))) return null;
  if (!head && !n.startsWith(`${family.prefix}.`)) n = `${family.prefix}.${n}`;
  return n;
}

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  reinitialized: string[];
  weights: string;
}

export interface LoadOptions {
  backend: Backend;
  dtype?: DType;
  /** Label names the data needs; a classifier of another size is re-initialised. */
  labels?: string[];
  /** Seed for initialising weights the checkpoint lacks. */
  seed?: number;
  /** A weights file to use instead of the folder's own (e.g. the tutorial's bert_finetuned.pth). */
  weightsFile?: string;
  /** predict/evaluate: every weight must come from the checkpoint, a head of the config's size included; a random
   *  re-initialisation there would give confident nonsense. */
  inference?: boolean;
  /** The task whose head to build (default text-classification; the CLI resolves it with model/task.ts). */
  task?: Task;
  /** LoRA adapters to wrap the base's Linears with (lora.ts), initialised as PEFT does; an adapter folder's own options win. */
  lora?: LoraOptions | null;
  /** A PEFT adapter folder to load onto the base (its matrices, its head, its config.json's labels). */
  adapterDir?: string;
  /** The base's name for a saved adapter's base_model_name_or_path (default: `dir`). */
  baseModel?: string;
  log?: (line: string) => void;
}

/** HF's _init_weights: Linear/Embedding weights ~ N(0, initializer_range), biases 0, LayerNorm 1/0. */
export function initParameter(model: TaskModel, name: string, rng: Rng): void {
  const v = model.params.value(name);
  const spec = model.params.spec(name);
  if (spec.kind === "norm") v.fill(name.endsWith(".weight") ? 1 : 0);
  else if (name.endsWith(".bias")) v.fill(0);
  else {
    const std = model.config.initializer_range;
    for (let i = 0; i < v.length; i++) v[i] = rng.normal() * std;
    if (name === `${model.family.embeddings(model.config).word}.weight`) {
      const E = model.config.embedding_size;
      v.fill(0, model.config.pad_token_id * E, model.config.pad_token_id * E + E); // padding_idx row
    }
  }
}

/** Every parameter finite: NaN weights are never loaded, saved or trained on silently. */
export function assertFinite(model: TaskModel, what: string): void {
  for (const spec of model.params.specs) {
    const v = model.params.value(spec.name);
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i]!)) throw new WeitiaoError(`${what}: ${spec.name} holds non-finite values (NaN or infinity)`);
    }
  }
}

/** Load config + weights from a HF folder. */
export function loadModelFromDir(dir: string, opts: LoadOptions): { model: TaskModel; report: LoadReport } {
  const log = opts.log ?? (() => {});
  const config = readConfig(dir);
  // A folder fine-tuned for another task must not get a classification head to predict with: the task's head: the one asked for, else (predict, evaluate) the one the folder was fine-tuned for.
  const task = opts.task ?? (opts.inference ? resolveTask(undefined, config) : "text-classification");
  if (opts.labels && opts.labels.length !== config.num_labels) {
    const show = (names: string[]): string => names.slice(0, 8).join(", ") + (names.length > 8 ? ", …" : "");
    const theirs = labelNames(config);
    const missing = opts.labels.filter((l) => !theirs.includes(l));
    log(`notice: the checkpoint's classifier has ${config.num_labels} labels (${show(theirs)}), the data ${opts.labels.length}` +
      (missing.length ? ` with ${missing.length} it lacks (${show(missing)})` : "") + ": the classifier is re-initialised");
  }
  if (opts.labels) {
    config.num_labels = opts.labels.length;
    config.id2label = Object.fromEntries(opts.labels.map((n, i) => [String(i), n]));
    config.label2id = Object.fromEntries(opts.labels.map((n, i) => [n, i]));
  }
  const adapterConfig = opts.adapterDir && existsSync(join(opts.adapterDir, "config.json")) ? readConfig(opts.adapterDir) : null;
  if (adapterConfig && !opts.labels) {
    // The adapter's head was trained for its config.json's labels (a base folder has none of its own)
    for (const k of ["num_labels", "id2label", "label2id", "problem_type"] as const) (config as unknown as Record<string, unknown>)[k] = adapterConfig[k];
  }
  const loraOptions = opts.adapterDir ? readAdapterConfig(opts.adapterDir) : opts.lora ?? null;
  let lora = null;
  if (loraOptions) {
    const head = headFor(task, familyOfConfig(config), config);
    lora = { ...resolveLora(config.model_type, task, paramLayout(config, head), head.linears.map((m) => m.name), loraOptions), baseModel: opts.baseModel ?? dir };
  }
  const model = new TaskModel(config, opts.backend, opts.dtype ?? "float32", task, lora);
  const { source, description } = opts.weightsFile
    ? { source: openWeightsFile(opts.weightsFile), description: opts.weightsFile }
    : openWeights(dir);
  const report: LoadReport = { missing: [], unexpected: [], reinitialized: [], weights: description };
  const loaded = new Set<string>();
  let headShape: string | undefined;
  try {
    // The head's modules keep their names (a masked LM's cls.predictions.*); its tied copies are the embedding's
    const headModules = [...model.head.linears.map((m) => m.name), ...(model.head.others ?? []).map((p) => p.name.replace(/\.(weight|bias)$/, ""))];
    const tied = new Set(model.head.tied ?? []);
    for (const raw of source.names()) {
      if (tied.has(raw)) continue;
      const name = canonicalName(raw, model.family, headModules);
      if (name === null) {
        // other heads (a masked LM's, BERT's next-sentence head) are reported, as HF does
        if (model.family.foreign.test(raw)) report.unexpected.push(raw);
        continue;
      }
      const spec = model.params.byName.get(name);
      if (!spec) {
        report.unexpected.push(raw);
        continue;
      }
      const shape = source.shape(raw);
      if (shape.join(",") !== spec.shape.join(",")) {
        if (name.startsWith("classifier.")) {
          report.reinitialized.push(name);
          headShape ??= `${raw} has shape [${shape}]`;
          continue;
        }
        throw new WeitiaoError(`${dir}: ${raw} has shape [${shape}] but config.json implies [${spec.shape}]`);
      }
      readInto(source, raw, model.params.value(name));
      loaded.add(name);
    }
  } finally {
    source.close();
  }
  const rng = new Rng(opts.seed ?? 42);
  for (const spec of model.params.specs) {
    if (loaded.has(spec.name) || spec.kind === "lora") continue;
    if (!report.reinitialized.includes(spec.name)) report.missing.push(spec.name);
    initParameter(model, spec.name, rng);
  }
  if (lora) {
    initLora(model, rng);
    if (opts.adapterDir) {
      loadAdapterWeights(model, opts.adapterDir);
      // the adapter's copy of the head replaces a missing or re-initialised one
      const fromAdapter = new Set(adapterParams(model));
      report.missing = report.missing.filter((n) => !fromAdapter.has(n));
      report.reinitialized = report.reinitialized.filter((n) => !fromAdapter.has(n));
    }
  }
  const firstLayer = model.family.layer(0).query;
  if (!loaded.has(`${firstLayer}.weight`)) {
    throw new WeitiaoError(`${dir}: ${description} holds none of the encoder weights (no ${firstLayer}.weight); is it a ${config.model_type} checkpoint?`);
  }
  if (opts.inference && (report.reinitialized.length || report.missing.length)) {
    throw new WeitiaoError(
      headShape
        ? `${dir}: ${headShape} in ${description} but config.json's id2label has ${config.num_labels} labels: the head does not match the config`
        : `${dir}: ${description} lacks ${report.missing.join(", ")}: predicting would use random weights (train or fine-tune this model first)`,
    );
  }
  assertFinite(model, `${dir}: ${description} is broken`);
  if (report.missing.length) {
    log(`Some weights of ${architectureOf(model.config, task)} were not initialized from the model checkpoint at ${dir} and are newly initialized: ${report.missing.join(", ")}`);
    log("You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.");
  }
  if (report.unexpected.length) {
    log(`Some weights of the model checkpoint at ${dir} were not used: ${report.unexpected.join(", ")}` +
      (report.unexpected.every((n) => model.family.foreign.test(n)) ? ` (expected: another task's heads, such as pretraining's, which a ${task} model does not use)` : ""));
  }
  return { model, report };
}

/** The files of a saved model written into `dir` (which exists and is ours): config.json, model.safetensors (F32,
 *  HF names, {"format":"pt"}), the tokenizer files copied from `tokenizerDir`, and `extraFiles`. */
export function writeModelFiles(model: TaskModel, dir: string, tokenizerDir: string | null, extraFiles: Record<string, string> = {}): string[] {
  const written: string[] = [];
  if (model.lora) {
    // A LoRA model is saved as its adapter (PEFT's folder); the base stays where it was loaded from
    written.push(...writeAdapterFiles(model, dir, model.lora.baseModel));
  } else {
    assertFinite(model, "refusing to save the model");
    writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(model.config, model.task), null, 2) + "\n");
    const tensors = new Map<string, TensorToWrite>();
    for (const spec of model.params.specs) tensors.set(spec.name, { dtype: "F32", shape: spec.shape, data: asFloat32(model.params.value(spec.name)) });
    writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
    written.push("config.json", "model.safetensors");
  }
  if (tokenizerDir) {
    for (const f of TOKENIZER_FILES) {
      if (hasModelFile(tokenizerDir, f)) {
        copyFileSync(join(tokenizerDir, f), join(dir, f));
        written.push(f);
      }
    }
  }
  for (const [name, content] of Object.entries(extraFiles)) writeFileSync(join(dir, name), content);
  return [...written, ...Object.keys(extraFiles)];
}

/**
 * Save a folder Python `transformers` loads (see writeModelFiles). Written to a temporary folder first and renamed
 * into place, so a failure (a full disk, NaN weights) leaves no half-written output and no temporary folder.
 */
export function saveModel(model: TaskModel, outDir: string, tokenizerDir: string | null, extraFiles: Record<string, string> = {}): void {
  const target = resolve(outDir);
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const files = writeModelFiles(model, tmp, tokenizerDir, extraFiles);
    // Replace only what we write, so an existing folder's other files (checkpoints, logs) survive.
    mkdirSync(target, { recursive: true });
    for (const f of files) renameSync(join(tmp, f), join(target, f));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
