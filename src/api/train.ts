/**
 * `train()`: the whole job behind `weitiao train` — read and check the data, load the model, fine-tune,
 * evaluate, save. Every input problem is found before the output folder is touched.
 */
import { resolve } from "node:path";
import { type BackendName, getBackend, type Precision } from "../backend/index.js";
import { encodeExamples, extractExamples, labelIds, resolveLabels, type TextExample } from "../data/dataset.js";
import { readRowsMany } from "../data/read.js";
import { loadModelFromDir, readConfig, saveModel } from "../io/checkpoint.js";
import { loadCheckpoint, resolveCheckpoint, saveCheckpoint } from "../io/trainer-checkpoint.js";
import { locateModel } from "../io/resolve.js";
import type { BertForSequenceClassification } from "../model/bert.js";
import { BertTokenizer } from "../tokenizer/index.js";
import { STRATEGIES, type Strategy } from "../train/strategy.js";
import {
  DEFAULT_TRAINING_ARGS, type EvalResult, Trainer, type TrainerHooks, type TrainResult, trainerState,
  type TrainingArgs, evaluate,
} from "../train/trainer.js";
import { WeitiaoError } from "../util/errors.js";

export interface TrainOptions {
  /** A HF model folder, a hub id (org/name[@revision]), "demo", or a weights file (.bin/.pth/.safetensors) with `modelConfig`. */
  model: string;
  /** With a bare weights file: the folder (or its config.json) holding config.json and the tokenizer. */
  modelConfig?: string;
  trainFile: string;
  validationFile?: string;
  outputDir: string;
  textColumn?: string;
  textPairColumn?: string;
  labelColumn?: string;
  noHeader?: boolean;
  maxLength?: number;
  batchSize?: number;
  evalBatchSize?: number;
  learningRate?: number;
  epochs?: number;
  maxSteps?: number;
  warmupSteps?: number;
  warmupRatio?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  gradientAccumulationSteps?: number;
  seed?: number;
  shuffle?: boolean;
  /** Overrides every dropout probability of the config. */
  dropout?: number;
  strategy?: Strategy;
  topK?: number;
  layerLrDecay?: number;
  loggingSteps?: number;
  /** With strategy head: cache the frozen encoder's features (default true). */
  cacheFeatures?: boolean;
  /** Checkpoint into outputDir/checkpoint-N every N steps (0: never). */
  saveSteps?: number;
  /** "epoch": checkpoint after every epoch; "steps": every saveSteps; "no" (default unless saveSteps is set). */
  saveStrategy?: "no" | "steps" | "epoch";
  /** Keep at most this many checkpoints (0: all). */
  saveTotalLimit?: number;
  /** Continue from a checkpoint folder, or "latest" in outputDir. */
  resumeFromCheckpoint?: string;
  /** Aborting it (e.g. on SIGINT) finishes the current step, writes a checkpoint and returns. */
  signal?: AbortSignal;
  backend?: BackendName;
  precision?: Precision;
  threads?: number;
  /** Download progress of hub files. */
  onDownloadProgress?: (file: string, received: number, total: number) => void;
  /** Lines for the user; silent when absent. */
  log?: (line: string) => void;
  hooks?: Omit<TrainerHooks, "log">;
}

export interface TrainOutput {
  outputDir: string;
  /** Set when `signal` stopped the run: the checkpoint to resume from. */
  interruptedAt?: string;
  model: BertForSequenceClassification;
  tokenizer: BertTokenizer;
  labels: string[];
  result: TrainResult;
  eval: EvalResult | null;
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new WeitiaoError(message);
}

function positiveInt(v: number | undefined, flag: string): void {
  if (v !== undefined) check(Number.isInteger(v) && v > 0, `${flag} must be a positive integer, got ${v}`);
}

export function validateTrainOptions(o: TrainOptions): void {
  positiveInt(o.batchSize, "--batch-size");
  positiveInt(o.evalBatchSize, "--eval-batch-size");
  positiveInt(o.maxLength, "--max-length");
  positiveInt(o.gradientAccumulationSteps, "--gradient-accumulation-steps");
  if (o.epochs !== undefined) check(Number.isInteger(o.epochs) && o.epochs >= 1, `--epochs must be a positive integer, got ${o.epochs}`);
  if (o.maxSteps !== undefined) check(Number.isInteger(o.maxSteps) && o.maxSteps >= 0, `--max-steps must be a non-negative integer, got ${o.maxSteps}`);
  if (o.warmupSteps !== undefined) check(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0, `--warmup-steps must be a non-negative integer`);
  if (o.warmupRatio !== undefined) check(o.warmupRatio >= 0 && o.warmupRatio < 1, `--warmup-ratio must be in [0, 1)`);
  if (o.learningRate !== undefined) check(Number.isFinite(o.learningRate) && o.learningRate >= 0, `--learning-rate must be a non-negative number`);
  if (o.weightDecay !== undefined) check(Number.isFinite(o.weightDecay) && o.weightDecay >= 0, `--weight-decay must be a non-negative number`);
  if (o.maxGradNorm !== undefined) check(Number.isFinite(o.maxGradNorm) && o.maxGradNorm >= 0, `--max-grad-norm must be a non-negative number (0 disables clipping)`);
  if (o.dropout !== undefined) check(o.dropout >= 0 && o.dropout < 1, `--dropout must be in [0, 1), got ${o.dropout}`);
  if (o.layerLrDecay !== undefined) check(o.layerLrDecay > 0 && o.layerLrDecay <= 1, `--layer-lr-decay must be in (0, 1], got ${o.layerLrDecay}`);
  if (o.loggingSteps !== undefined) check(Number.isInteger(o.loggingSteps) && o.loggingSteps >= 0, `--logging-steps must be a non-negative integer`);
  if (o.strategy !== undefined) check(STRATEGIES.includes(o.strategy), `--strategy must be one of ${STRATEGIES.join(", ")}, got ${o.strategy}`);
  if (o.strategy === "top-k") check(o.topK !== undefined, "--strategy top-k needs --top-k K");
  if (o.topK !== undefined && o.strategy !== "top-k") check(false, "--top-k only applies with --strategy top-k");
  if (o.saveSteps !== undefined) check(Number.isInteger(o.saveSteps) && o.saveSteps >= 0, "--save-steps must be a non-negative integer");
  if (o.saveTotalLimit !== undefined) check(Number.isInteger(o.saveTotalLimit) && o.saveTotalLimit >= 0, "--save-total-limit must be a non-negative integer");
  if (o.saveStrategy !== undefined) check(["no", "steps", "epoch"].includes(o.saveStrategy), "--save-strategy must be no, steps or epoch");
}

function labelCounts(ids: Int32Array, names: string[]): string {
  const counts = new Array<number>(names.length).fill(0);
  for (const id of ids) counts[id]!++;
  return names.map((n, i) => `${n}: ${counts[i]}`).join(", ");
}

function reportSkipped(log: (l: string) => void, skipped: { file: string; line: number; reason: string }[]): void {
  if (skipped.length === 0) return;
  const byReason = new Map<string, string[]>();
  for (const s of skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), `${s.file}:${s.line}`]);
  for (const [reason, where] of byReason) {
    log(`skipped ${where.length} row(s) with ${reason}: ${where.slice(0, 5).join(", ")}${where.length > 5 ? ", …" : ""}`);
  }
}

export async function train(options: TrainOptions): Promise<TrainOutput> {
  const log = options.log ?? (() => {});
  validateTrainOptions(options);
  const o = { textColumn: "text", labelColumn: "label", maxLength: 128, ...options };
  const location = await locateModel(o.model, o.modelConfig, { log, onProgress: o.onDownloadProgress });
  const modelDir = location.dir;
  const config = readConfig(modelDir);
  const tokenizer = BertTokenizer.fromDir(modelDir);

  // Data: everything is read and checked before any output is written.
  const cols = { textColumn: o.textColumn, textPairColumn: o.textPairColumn, labelColumn: o.labelColumn };
  const trainRead = extractExamples(readRowsMany(o.trainFile, { noHeader: o.noHeader }), cols, true);
  reportSkipped(log, trainRead.skipped);
  if (trainRead.examples.length === 0) throw new WeitiaoError(`${o.trainFile}: no usable rows (every row was skipped)`);
  const labelSet = resolveLabels(trainRead.examples, config);
  const trainLabels = labelIds(trainRead.examples, labelSet);
  let evalExamples: TextExample[] = [];
  let evalLabels: Int32Array | null = null;
  if (o.validationFile) {
    const evalRead = extractExamples(readRowsMany(o.validationFile, { noHeader: o.noHeader }), cols, true);
    reportSkipped(log, evalRead.skipped);
    evalExamples = evalRead.examples;
    evalLabels = labelIds(evalExamples, labelSet);
  }
  let maxLength = o.maxLength;
  if (maxLength > config.max_position_embeddings) {
    log(`notice: --max-length ${maxLength} capped at the model's max_position_embeddings ${config.max_position_embeddings}`);
    maxLength = config.max_position_embeddings;
  }
  const trainEnc = encodeExamples(tokenizer, trainRead.examples, trainLabels, maxLength);
  const evalEnc = evalLabels ? encodeExamples(tokenizer, evalExamples, evalLabels, maxLength) : null;
  log(`train: ${trainRead.examples.length} rows from ${o.trainFile}; labels ${labelCounts(trainLabels, labelSet.names)}`);
  if (trainEnc.stats.truncated) log(`train: ${trainEnc.stats.truncated} row(s) truncated to ${maxLength} tokens`);
  if (evalEnc) {
    log(`validation: ${evalExamples.length} rows from ${o.validationFile}; labels ${labelCounts(evalLabels!, labelSet.names)}`);
    if (evalEnc.stats.truncated) log(`validation: ${evalEnc.stats.truncated} row(s) truncated to ${maxLength} tokens`);
  }
  const outputDir = resolve(o.outputDir);

  const backend = getBackend({ backend: o.backend, precision: o.precision, threads: o.threads, log });
  const { model } = loadModelFromDir(modelDir, { backend, labels: labelSet.names, seed: o.seed ?? 42, log, weightsFile: location.weightsFile });
  model.config.problem_type = "single_label_classification";
  if (o.dropout !== undefined) model.setDropout(o.dropout);

  const args: TrainingArgs = {
    ...DEFAULT_TRAINING_ARGS,
    ...definedOnly({
      epochs: o.epochs, maxSteps: o.maxSteps, batchSize: o.batchSize, evalBatchSize: o.evalBatchSize,
      learningRate: o.learningRate, warmupSteps: o.warmupSteps, warmupRatio: o.warmupRatio, weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm, gradientAccumulationSteps: o.gradientAccumulationSteps, seed: o.seed,
      shuffle: o.shuffle, strategy: o.strategy, topK: o.topK, layerLrDecay: o.layerLrDecay, loggingSteps: o.loggingSteps,
      cacheFeatures: o.cacheFeatures,
      saveSteps: o.saveStrategy === "no" ? 0 : o.saveSteps, saveStrategy: o.saveStrategy,
    }),
  };
  const resolved = {
    ...args, model: o.model, trainFile: o.trainFile, validationFile: o.validationFile ?? null, outputDir,
    textColumn: o.textColumn, textPairColumn: o.textPairColumn ?? null, labelColumn: o.labelColumn, maxLength,
    dropout: o.dropout ?? null, backend: backend.name, precision: o.precision ?? "fp32",
  };
  let lastCheckpoint: string | undefined;
  const trainer: Trainer = new Trainer(model, args, trainEnc.encoded, evalEnc?.encoded ?? null, tokenizer.padId, {
    ...o.hooks,
    log,
    onSave: (state, reason) => {
      const partial = { globalStep: state.step, epochs: state.epochs, logHistory: state.history, totalSteps: trainer.totalSteps, trainSeconds: 0, interrupted: reason === "interrupt" };
      lastCheckpoint = saveCheckpoint(model, trainer.optimizer, state, {
        outputDir, tokenizerDir: modelDir, totalLimit: o.saveTotalLimit ?? 0,
        files: {
          "trainer_state.json": JSON.stringify(trainerState(partial, args), null, 2) + "\n",
          "training_args.json": JSON.stringify(resolved, null, 2) + "\n",
        },
      });
      log(`saved checkpoint ${lastCheckpoint}`);
    },
  });
  if (o.resumeFromCheckpoint) {
    const dir = resolveCheckpoint(o.resumeFromCheckpoint, outputDir);
    trainer.restore(loadCheckpoint(dir, model, trainer.optimizer));
    log(`resuming from ${dir}`);
  }
  log(`training ${trainer.totalSteps} steps (${args.epochs} epoch(s) × ${trainer.stepsPerEpoch}), strategy ${args.strategy}, backend ${backend.name}`);
  const onAbort = (): void => trainer.requestStop();
  o.signal?.addEventListener("abort", onAbort);
  let result: TrainResult;
  try {
    result = await trainer.train();
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  if (result.interrupted) {
    return { outputDir, model, tokenizer, labels: labelSet.names, result, eval: null, interruptedAt: lastCheckpoint };
  }
  const finalEval = evalEnc ? evaluate(model, evalEnc.encoded, args.evalBatchSize, tokenizer.padId) : null;

  saveModel(model, outputDir, modelDir, {
    "trainer_state.json": JSON.stringify(trainerState(result, args), null, 2) + "\n",
    "training_args.json": JSON.stringify(resolved, null, 2) + "\n",
  });
  log(`saved model to ${outputDir}`);
  return { outputDir, model, tokenizer, labels: labelSet.names, result, eval: finalEval };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
