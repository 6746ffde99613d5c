/** Loading a fine-tuned model and predicting labels for new text. */
import { type BackendName, getBackend, type Precision } from "../backend/index.js";
import { encodeExamples, extractExamples, labelSetForFile, labelTargets, lengthSortedCollated, type EncodedExample } from "../data/dataset.js";
import { readRowsMany, type ReadOptions } from "../data/read.js";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { adapterBase, isAdapterDir, readAdapterConfig } from "../io/adapter.js";
import { PEFT_TASK_TYPES } from "../model/lora.js";
import { resolveTask, type Task } from "../model/task.js";
import { evaluate, prefixed } from "../train/trainer.js";
import { WeitiaoError } from "../util/errors.js";
import { loadModelFromDir, readConfig } from "../io/checkpoint.js";
import { locateModel } from "../io/resolve.js";
import type { TaskModel } from "../model/task-model.js";
import type { ClassPrediction } from "../model/heads/classification.js";
import { labelNames, maxSequenceLength } from "../model/config.js";
import { BertTokenizer, checkTokenizerFits, type TruncationStrategy } from "../tokenizer/index.js";

export interface LoadedModel {
  model: TaskModel;
  tokenizer: BertTokenizer;
  labels: string[];
  dir: string;
  /** The --max-length the model was trained with (its folder's training_args.json), the default for predict/evaluate. */
  trainedMaxLength: number | null;
}

/** training_args.json's maxLength, where the folder has one (a weitiao output); anything unreadable counts as none. */
function trainedMaxLength(dir: string): number | null {
  try {
    const args = JSON.parse(readFileSync(join(dir, "training_args.json"), "utf8")) as { max_seq_length?: unknown; maxLength?: unknown };
    const v = args.max_seq_length ?? args.maxLength; // (maxLength: folders written before HF's names)
    return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : null;
  } catch {
    return null;
  }
}

/** The length inputs are cut to: the asked one, else the trained one, else 512; never past the model's positions. */
export function inputLength(loaded: LoadedModel, asked: number | undefined): number {
  return Math.min(asked ?? loaded.trainedMaxLength ?? 512, maxSequenceLength(loaded.model.config));
}

export interface LoadModelOptions {
  /** With a bare weights file as `model`: the folder (or config.json) with config.json and the tokenizer. */
  modelConfig?: string;
  backend?: BackendName;
  precision?: Precision;
  threads?: number;
  /** A PEFT LoRA adapter folder to apply to `model` (the base). */
  adapter?: string;
  /** The head to load (default: the one the folder was fine-tuned for); fill-mask loads a …ForMaskedLM's. */
  task?: Task;
  log?: (line: string) => void;
}

export async function loadModel(model: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  // A LoRA adapter: `--model ADAPTER` (its base from adapter_config.json) or `--model BASE --adapter ADAPTER`
  const adapterDir = opts.adapter ?? (isAdapterDir(model) && !existsSync(join(model, "model.safetensors")) ? model : undefined);
  const adapter = adapterDir ? readAdapterConfig(adapterDir) : null;
  if (adapterDir && !opts.adapter && !adapter!.baseModel) throw new WeitiaoError(`${adapterDir}: adapter_config.json names no base_model_name_or_path: give the base with --model and the adapter with --adapter`);
  const base = adapterDir && !opts.adapter ? adapterBase(adapterDir, adapter!.baseModel!) : model;
  const { dir, weightsFile } = await locateModel(base, opts.modelConfig, { log: opts.log });
  if (opts.adapter && adapter?.baseModel && !sameModel(adapter.baseModel, model, adapterDir!)) {
    opts.log?.(`warning: the adapter ${adapterDir} was trained on ${adapter.baseModel}, not ${model}`);
  }
  const backend = getBackend({ ...opts });
  // A …ForMaskedLM folder (bert-base-chinese, or train --task fill-mask's output) loads its masked-LM head
  const maskedLm = !adapterDir && (readConfig(dir).architectures?.[0]?.endsWith("ForMaskedLM") ?? false);
  const task = opts.task ?? (adapterDir ? adapterTask(adapterDir, adapter!.taskType) : maskedLm ? "fill-mask" : undefined);
  const loaded = loadModelFromDir(dir, { backend, log: opts.log, weightsFile, inference: true, adapterDir, task });
  const labels = labelNames(loaded.model.config);
  const tokenizerDir = adapterDir && existsSync(join(adapterDir, "tokenizer.json")) ? adapterDir : dir;
  const tokenizer = BertTokenizer.fromDir(tokenizerDir);
  checkTokenizerFits(tokenizer, loaded.model.config.vocab_size, tokenizerDir);
  return { model: loaded.model, tokenizer, labels, dir: adapterDir ?? dir, trainedMaxLength: trainedMaxLength(adapterDir ?? dir) };
}

/** An adapter's task: its config.json's architectures (ours), else PEFT's task_type. */
function adapterTask(dir: string, taskType: string | null): Task {
  if (existsSync(join(dir, "config.json"))) {
    const config = readConfig(dir);
    return config.architectures?.[0]?.endsWith("ForMaskedLM") ? "fill-mask" : resolveTask(undefined, config);
  }
  const task = Object.entries(PEFT_TASK_TYPES).find(([, t]) => t.taskType === taskType)?.[0] as Task | undefined;
  if (task !== "text-classification" && task !== "token-classification") {
    throw new WeitiaoError(`${dir}: adapter_config.json's task_type ${JSON.stringify(taskType)} is not one weitiao predicts (SEQ_CLS, TOKEN_CLS)`);
  }
  return task;
}

/** Is `name` (an adapter's base_model_name_or_path) the model given as `model`? Folders compare resolved. */
function sameModel(name: string, model: string, adapterDir: string): boolean {
  if (name === model) return true;
  const a = adapterBase(adapterDir, name);
  return existsSync(a) && existsSync(model) && resolve(a) === resolve(model);
}

export interface TextInput {
  text: string;
  textPair?: string | null;
}

/** What predict returns per input: the task head's prediction (heads/classification.ts). */
export type Prediction = ClassPrediction;

export interface PredictOptions {
  /** Default: the length the model was trained with, else 512. */
  maxLength?: number;
  batchSize?: number;
  /** Multi-label decision threshold (default 0.5). */
  threshold?: number;
  truncation?: TruncationStrategy;
  /** Keep only the N most probable labels in `probabilities`. */
  topLabels?: number;
  /** Called after each batch with the number of rows done. */
  onProgress?: (done: number, total: number) => void;
}

export function predict(loaded: LoadedModel, inputs: TextInput[], opts: PredictOptions = {}): Prediction[] {
  const { model, tokenizer, labels } = loaded;
  const maxLength = inputLength(loaded, opts.maxLength);
  const batchSize = opts.batchSize ?? 32;
  const C = model.config.num_labels;
  const encoded: EncodedExample[] = inputs.map((t) => {
    const e = tokenizer.encode(t.text, t.textPair ?? null, { maxLength, truncation: opts.truncation });
    return { inputIds: e.inputIds, tokenTypeIds: e.tokenTypeIds, label: -1 };
  });
  const out: Prediction[] = new Array(inputs.length);
  let done = 0;
  for (const { rows, batch } of lengthSortedCollated(encoded, batchSize, tokenizer.padId)) {
    const { logits } = model.forward(batch.input, { train: false });
    const headOpts = { threshold: opts.threshold ?? 0.5, topLabels: opts.topLabels };
    // predict runs text-classification models only (loadModel resolves the task), so each row is a ClassPrediction
    for (const [b, i] of rows.entries()) out[i] = model.head.prediction(Array.from(logits.subarray(b * C, b * C + C)), labels, headOpts) as ClassPrediction;
    done += rows.length;
    opts.onProgress?.(done, inputs.length);
  }
  return out;
}

export interface EvaluateFileOptions {
  textColumn?: string;
  textPairColumn?: string;
  labelColumn?: string;
  /** Default: the length the model was trained with, else 512. */
  maxLength?: number;
  batchSize?: number;
  threshold?: number;
  read?: ReadOptions;
}

/** Evaluate a saved model on a labelled file: the same metrics training reports, with HF's eval_ prefix. */
export function evaluateFile(loaded: LoadedModel, file: string, opts: EvaluateFileOptions = {}): Record<string, unknown> {
  const { model, tokenizer, labels } = loaded;
  const cols = { textColumn: opts.textColumn ?? "text", textPairColumn: opts.textPairColumn, labelColumn: opts.labelColumn ?? "label" };
  const { examples, skipped } = extractExamples(readRowsMany(file, opts.read), cols, true);
  if (examples.length === 0) throw new WeitiaoError(`${file}: no usable rows`);
  const problemType = model.config.problem_type ?? "single_label_classification";
  const set = labelSetForFile(examples, labels, problemType);
  const maxLength = inputLength(loaded, opts.maxLength);
  const { encoded } = encodeExamples(tokenizer, examples, labelTargets(examples, set), maxLength);
  const ev = evaluate(model, encoded, opts.batchSize ?? 64, tokenizer.padId, opts.threshold ?? 0.5);
  return {
    rows: examples.length, skipped: skipped.length, eval_loss: ev.loss, ...prefixed("eval_", ev.metrics),
    ...(ev.classification ? { per_class: ev.classification.per_class, confusion_matrix: { labels, matrix: ev.classification.confusion } } : {}),
  };
}
