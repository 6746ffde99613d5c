/**
 * `train()`: the whole job behind `weitiao train` — read and check the data, load the model, fine-tune,
 * evaluate, save. Every input problem is found before the output folder is touched.
 */
import { basename, join, resolve } from "node:path";
import { readFileSync } from "node:fs";
import { modelCard } from "../io/model-card.js";
import { TensorBoardWriter } from "../io/tensorboard.js";
import { adapterParams, mergedModel } from "../io/adapter.js";
import { LORA_DEFAULTS, type LoraOptions } from "../model/lora.js";
import { getBackend } from "../backend/index.js";
import {
  type EncodedExample, encodeExamples, extractExamples, type LabelTargets, labelTargets, resolveLabels, type SkippedRow, type TextExample,
} from "../data/dataset.js";
import { type DataReport, dataReport, percentile, reportLines } from "../data/report.js";
import { stratifiedSplit } from "../data/split.js";
import { readRowsMany } from "../data/read.js";
import { loadModelFromDir, readConfig, saveModel } from "../io/checkpoint.js";
import { loadCheckpoint, resolveCheckpoint, saveCheckpoint } from "../io/trainer-checkpoint.js";
import { locateModel } from "../io/resolve.js";
import type { TaskModel } from "../model/task-model.js";
import { BertTokenizer, checkTokenizerFits } from "../tokenizer/index.js";
import {
  DEFAULT_TRAINING_ARGS, type EvalResult, Trainer, type TrainerHooks, type TrainResult, trainerState,
  type TrainingArgs, evaluate, predictLabels, prefixed,
} from "../train/trainer.js";
import { renderReport } from "../io/report.js";
import { WeitiaoError } from "../util/errors.js";
import { type BertConfig, familyOfConfig, hasGenericLabels, labelNames, maxSequenceLength, type ProblemType } from "../model/config.js";
import { encodeTokenExamples, readTokenRows, resolveTagNames, tagScheme, type TokenExample } from "../data/tokens.js";
import { checkOutputDir, clearOutputDir, csvCell, lockOutputDir } from "../io/output.js";
import { checkTableOptions, hfNamedArgs, type TableOptions, TRAIN_OPTIONS, TRAINING_KEYS, withDefaults } from "../train/options.js";
import { resolveTask } from "../model/task.js";
import { schedulerKwargs } from "../train/schedule.js";
import { metricKey } from "../train/trainer.js";
import { fixedMasks, loadSegmenter, type MaskingSpec, maskingSpec, mlmBlocks, type MlmExample } from "../data/mlm.js";

/**
 * train()'s options: every flag of `weitiao train` (declared once, with its help, default and check, in
 * options.ts: TRAIN_OPTIONS and COMPUTE_OPTIONS) under its camelCase name, plus what only a program can pass.
 */
export type TrainOptions = TableOptions & {
  model: string;
  trainFile: string;
  outputDir: string;
  /** Aborting it (e.g. on SIGINT) finishes the current step, writes a checkpoint and returns. */
  signal?: AbortSignal;
  /** Download progress of hub files. */
  onDownloadProgress?: (file: string, received: number, total: number) => void;
  /** Lines for the user; silent when absent. */
  log?: (line: string) => void;
  hooks?: Omit<TrainerHooks, "log">;
};

export interface TrainOutput {
  outputDir: string;
  /** Set when `signal` stopped the run: the checkpoint to resume from. */
  interruptedAt?: string;
  model: TaskModel;
  tokenizer: BertTokenizer;
  labels: string[];
  result: TrainResult;
  eval: EvalResult | null;
  test: EvalResult | null;
  reports: Record<string, DataReport>;
}

const WEITIAO_VERSION = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function check(cond: boolean, message: string): void {
  if (!cond) throw new WeitiaoError(message);
}

/** Each option against its declaration (options.ts), then the rules that tie options together. */
export function validateTrainOptions(o: TrainOptions): void {
  checkTableOptions(o);
  if (o.strategy === "top-k") check(o.topK !== undefined, "--strategy top-k needs --top-k K");
  if (o.topK !== undefined && o.strategy !== "top-k") check(false, "--top-k only applies with --strategy top-k");
  if (o.validationSplit !== undefined && o.validationFile) check(false, "use --validation-file or --validation-split, not both");
  if (o.lrSchedulerKwargs !== undefined || o.lrSchedulerType) schedulerKwargs(o.lrSchedulerType ?? "linear", o.lrSchedulerKwargs, o.learningRate ?? 5e-5);
  if (o.labelSmoothingFactor && (o.problemType === "regression" || o.problemType === "multi_label_classification")) {
    check(false, `--label-smoothing-factor applies to single-label and token classification, not ${o.problemType}`);
  }
  if (o.doPredict) check(o.testFile !== undefined, "--do-predict writes the predictions of --test-file: give one");
  if (o.doPredict && (o.task === "fill-mask" || o.task === "question-answering")) check(false, `--do-predict applies to classification and token classification, not ${o.task}`);
  if (o.evalStrategy === "steps" && !o.validationFile && !o.validationSplit) check(false, "--eval-strategy steps evaluates validation data: give --validation-file or --validation-split");
  if (o.evalStrategy === "steps") check(Number.isInteger(o.evalSteps) && o.evalSteps! > 0, "--eval-strategy steps needs --eval-steps N");
  if (o.lrSchedulerType === "reduce_lr_on_plateau" && ((!o.validationFile && !o.validationSplit) || o.evalStrategy === "no")) {
    check(false, "--lr-scheduler-type reduce_lr_on_plateau lowers the lr when evaluations stop improving: it needs validation data (--validation-file or --validation-split) and an --eval-strategy");
  }
  if (o.saveStrategy === "best" && ((!o.validationFile && !o.validationSplit) || o.evalStrategy === "no")) {
    check(false, "--save-strategy best saves when an evaluation improves: it needs validation data (--validation-file or --validation-split) and an --eval-strategy");
  }
  if ((o.loadBestModelAtEnd || o.earlyStoppingPatience) && !o.validationFile && !o.validationSplit) {
    check(false, "--load-best-model-at-end and --early-stopping-patience need validation data (--validation-file or --validation-split)");
  }
}

export async function train(options: TrainOptions): Promise<TrainOutput> {
  const log = options.log ?? (() => {});
  validateTrainOptions(options);
  // --adapter continues a LoRA adapter: the strategy is lora (given or not)
  const o = withDefaults({ ...options, strategy: options.strategy ?? (options.adapter ? "lora" : undefined) }) as TrainOptions & { textColumn: string; labelColumn: string; maxLength: number };
  const lora = loraOptionsOf(options, o.strategy ?? "full");
  if (o.learningRate !== undefined && o.learningRate > 1) {
    const m = /^(\d+(?:\.\d+)?)e\+?(\d+)$/.exec(o.learningRate.toExponential().replace(/\.?0+e/, "e"));
    log(`warning: --learning-rate ${o.learningRate} is above 1 (fine-tuning uses 1e-5 … 1e-3)${m ? `; did you mean ${m[1]}e-${m[2]}?` : ""}`);
  }
  const outputUse = checkOutputDir(o.outputDir, { overwrite: o.overwriteOutputDir, resume: o.resumeFromCheckpoint !== undefined });
  const location = await locateModel(o.model, o.modelConfig, { log, onProgress: o.onDownloadProgress });
  const modelDir = location.dir;
  const config = readConfig(modelDir);
  const task = resolveTask(o.task, config);
  for (const [flag, given] of [["--stride", o.stride !== undefined], ["--label-all-tokens", o.labelAllTokens === true]] as const) {
    check(!given || task === "token-classification", `${flag} applies to token-classification (NER), not ${task}`);
  }
  // (a value equal to the default, as training_args.json replayed through --config holds it, is no request)
  for (const [flag, key] of [["--line-by-line", "lineByLine"], ["--mlm-probability", "mlmProbability"], ["--whole-word-mask", "wholeWordMask"]] as const) {
    const v = options[key];
    check(v === undefined || v === (withDefaults({}) as TrainOptions)[key] || task === "fill-mask", `${flag} applies to fill-mask (masked-LM pretraining), not ${task}`);
  }
  if (task === "text-classification" && /\.txt$/i.test(o.trainFile)) {
    throw new WeitiaoError(`${o.trainFile}: a .txt file is plain text: for masked-LM pretraining on it pass --task mlm; classification data is CSV/TSV/JSONL with a label column`);
  }
  const tokenizer = BertTokenizer.fromDir(modelDir);
  checkTokenizerFits(tokenizer, config.vocab_size, modelDir);

  let maxLength = o.maxLength;
  const positions = maxSequenceLength(config);
  if (maxLength > positions) {
    log(`notice: --max-length ${maxLength} capped at ${positions}, the longest input the model's max_position_embeddings ${config.max_position_embeddings} allows`);
    maxLength = positions;
  }
  // Data: everything is read and checked before any output is written.
  const data = task === "token-classification"
    ? prepareTokenData(o, config, tokenizer, maxLength, log)
    : task === "fill-mask"
      ? await prepareMlmData(o, tokenizer, maxLength, log)
      : prepareClassificationData(o, config, tokenizer, maxLength, log);
  const { trainEnc, evalEnc, testEnc, reports } = data;
  const labelSet = { names: data.names, problemType: data.problemType };
  if (o.labelSmoothingFactor && (labelSet.problemType === "regression" || labelSet.problemType === "multi_label_classification")) {
    check(false, `--label-smoothing-factor applies to single-label and token classification, not ${labelSet.problemType}`);
  }
  const outputDir = resolve(o.outputDir);

  // auto (the default) picks bf16 only where this CPU runs it faster; LoRA runs in fp32 for now
  const asked = o.precision ?? (lora || o.adapter ? "fp32" : "auto");
  const backend = getBackend({ backend: o.backend, precision: asked, threads: o.threads, log });
  check(!(lora || o.adapter) || !backend.usesBf16Copies, "--strategy lora runs in fp32 for now: use --precision fp32");
  const precision = backend.usesBf16Copies ? "bf16" : "fp32";
  // An adapter names its base as the user did: a hub id as given, a folder by its absolute path
  const baseModel = location.hubId ?? resolve(location.dir);
  const { model } = loadModelFromDir(modelDir, { backend, labels: task === "fill-mask" ? undefined : labelSet.names, seed: o.seed ?? 42, log, weightsFile: location.weightsFile, task, lora, adapterDir: o.adapter, baseModel });
  if (model.lora) {
    const trainable = adapterParams(model).reduce((n, name) => n + model.params.spec(name).size, 0);
    log(`LoRA: r ${model.lora.r}, alpha ${model.lora.alpha} (scale ${model.lora.scale}) on ${model.lora.targets.length} Linears (${model.lora.targetModules.join(", ")}), ` +
      `modules_to_save ${model.lora.modulesToSave.join(", ")}; trainable ${trainable.toLocaleString("en")} of ${model.params.size.toLocaleString("en")} parameters (${(100 * trainable / model.params.size).toFixed(2)}%)`);
  }
  if (labelSet.problemType) model.config.problem_type = labelSet.problemType;
  if (labelSet.problemType && labelSet.problemType !== "single_label_classification") log(`task: ${labelSet.problemType} (${labelSet.names.length} output(s))`);
  if (task === "token-classification") log(`task: ${task} (${labelSet.names.length} tags: ${labelSet.names.join(", ")})`);
  if (o.dropout !== undefined) model.setDropout(o.dropout);

  // The trainer's arguments are the table's training options; saving every N steps implies the steps strategy.
  const saveStrategy = o.saveStrategy ?? ((o.saveSteps ?? 0) > 0 ? "steps" : "no");
  const given = o as Record<string, unknown>;
  const args: TrainingArgs = {
    ...DEFAULT_TRAINING_ARGS,
    ...definedOnly(Object.fromEntries(TRAINING_KEYS.map((k) => [k, given[k]]))),
    saveStrategy,
    saveSteps: saveStrategy === "no" || saveStrategy === "best" ? 0 : o.saveSteps ?? 0,
  };
  // training_args.json: every option as this run resolved it (what --config needs to repeat the run), under HF's names.
  const resolved: Record<string, unknown> = {
    ...Object.fromEntries(TRAIN_OPTIONS.filter((s) => s.key !== "resumeFromCheckpoint").map((s) => [s.key, given[s.key] ?? null])),
    ...args, task, outputDir, maxLength, problemType: labelSet.problemType, backend: backend.name, precision, threads: o.threads ?? null,
  };
  // One run per output folder: a second one would mix its checkpoints into ours.
  const lock = lockOutputDir(outputDir, log);
  let board: TensorBoardWriter | null = null;
  try {
    clearOutputDir(outputDir, outputUse, log);
    const reportTo = (o.reportTo ?? "none").split(/[,\s]+/).filter(Boolean);
    const others = reportTo.filter((r) => !["none", "all", "tensorboard"].includes(r));
    if (others.length) log(`notice: --report-to ${others.join(", ")}: not available here, ignored (tensorboard is)`);
    if (reportTo.includes("tensorboard") || reportTo.includes("all")) {
      board = new TensorBoardWriter(resolve(o.loggingDir ?? join(outputDir, "runs")));
      log(`TensorBoard: ${board.file} (tensorboard --logdir ${resolve(o.loggingDir ?? join(outputDir, "runs"))})`);
    }
    const onLog = board ? (e: Record<string, number>): void => board!.log(e) : undefined;
    let lastCheckpoint: string | undefined;
    const trainer: Trainer = new Trainer(model, args, trainEnc, evalEnc ?? null, tokenizer.padId, {
      ...o.hooks,
      log,
      onLog: onLog as TrainerHooks["onLog"],
      onSave: (state, reason) => {
        const partial = { globalStep: state.step, epochs: state.epochs, logHistory: state.history, totalSteps: trainer.totalSteps, trainSeconds: 0, trainLoss: NaN, samplesSeen: 0, stepsRun: 0, interrupted: reason === "interrupt" };
        lastCheckpoint = saveCheckpoint(model, trainer.optimizer, state, {
          outputDir, tokenizerDir: modelDir, totalLimit: o.saveTotalLimit ?? 0, onlyModel: args.saveOnlyModel,
          files: {
            "trainer_state.json": JSON.stringify(trainerState(partial, args, undefined, outputDir), null, 2) + "\n",
            "training_args.json": JSON.stringify(hfNamedArgs(resolved, WEITIAO_VERSION), null, 2) + "\n",
          },
        });
        log(`saved checkpoint ${lastCheckpoint}`);
      },
    }, {}, data.masking ?? null);
    if (o.resumeFromCheckpoint) {
      const dir = resolveCheckpoint(o.resumeFromCheckpoint, outputDir);
      trainer.restore(loadCheckpoint(dir, model, trainer.optimizer));
      log(`resuming from ${dir}`);
    }
    const plan = args.maxSteps > 0
      ? `--max-steps ${args.maxSteps}; an epoch is ${trainer.stepsPerEpoch} step(s)`
      : `${args.epochs} epoch(s) × ${trainer.stepsPerEpoch}`;
    log(`training ${trainer.totalSteps} steps (${plan}), strategy ${args.strategy}, backend ${backend.name}`);
    const onAbort = (): void => trainer.requestStop();
    o.signal?.addEventListener("abort", onAbort);
    let result: TrainResult;
    try {
      result = await trainer.train();
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    if (result.interrupted) {
      return { outputDir, model, tokenizer, labels: labelSet.names, result, eval: null, test: null, reports, interruptedAt: lastCheckpoint };
    }
    // The evaluation after the last step, when there was one, saw these very weights: not run twice.
    const finalEval = evalEnc ? (result.finalEval ?? evaluate(model, evalEnc, args.evalBatchSize, tokenizer.padId, args.threshold, args.labelSmoothingFactor)) : null;
    const test = testEnc && data.testLabelled !== false ? evaluate(model, testEnc, args.evalBatchSize, tokenizer.padId, args.threshold, args.labelSmoothingFactor) : null;
    const predictions = o.doPredict && testEnc
      ? "index,prediction\n" + predictLabels(model, testEnc, args.evalBatchSize, tokenizer.padId, args.threshold).map((p, i) => `${i},${csvCell(p)}`).join("\n") + "\n"
      : null;
    if (test) log(`test_loss: ${test.loss.toFixed(4)} | ${Object.entries(test.metrics).map(([k, v]) => `test_${k}: ${v.toFixed(4)}`).join(" | ")}`);

    const summary = runSummary(result);
    board?.log({ ...summary, step: result.globalStep });
    if (test) board?.log({ test_loss: test.loss, ...prefixed("test_", test.metrics), step: result.globalStep });
    log(`train_runtime: ${summary.train_runtime.toFixed(1)} s | train_samples_per_second: ${summary.train_samples_per_second.toFixed(2)} | ` +
      `train_steps_per_second: ${summary.train_steps_per_second.toFixed(3)} | train_loss: ${summary.train_loss.toFixed(4)}`);
    saveModel(model, outputDir, modelDir, {
      "trainer_state.json": JSON.stringify(trainerState(result, args, summary, outputDir), null, 2) + "\n",
      "training_args.json": JSON.stringify(hfNamedArgs(resolved, WEITIAO_VERSION), null, 2) + "\n",
      "data_report.json": JSON.stringify(reports, null, 2) + "\n",
      "metrics.json": JSON.stringify({
        ...runSummary(result), train_samples: trainEnc.length, global_step: result.globalStep,
        ...(finalEval ? { eval_loss: finalEval.loss, ...prefixed("eval_", finalEval.metrics) } : {}),
        ...(test ? { test_loss: test.loss, ...prefixed("test_", test.metrics) } : {}),
        best: result.best ?? null, early_stopped: result.earlyStopped ?? false,
      }, null, 2) + "\n",
      ...(predictions ? { "predict_results.csv": predictions } : {}),
      "README.md": modelCard({
        name: basename(outputDir), baseModel, fromHub: location.hubId !== undefined, task, trainFile: basename(o.trainFile),
        validationFile: o.validationFile ? basename(o.validationFile) : o.validationSplit ? `${o.validationSplit} of ${basename(o.trainFile)}` : undefined,
        labels: labelSet.names, args, result, eval: finalEval, test, adapter: model.lora !== null,
        versions: { weitiao: WEITIAO_VERSION, "Node.js": process.versions.node, backend: `${backend.name} (${precision})` },
      }),
      "report.html": renderReport({
        // names, not absolute paths: the report is shared
        title: `weitiao: ${location.hubId ?? basename(resolve(o.model))} on ${o.trainFile.split(",").map((f) => basename(f.trim())).join(", ")}`, result, eval: finalEval, test,
        labels: labelSet.names, reports, args: resolved, samples: trainEnc.length * result.epochs.length,
        given: Object.keys(options).filter((k) => (options as Record<string, unknown>)[k] !== undefined),
      }),
    });
    if (model.lora && o.mergeLora) {
      // with the run's training_args.json, so that predict there defaults to the trained length as in the adapter's folder
      saveModel(mergedModel(model), join(outputDir, "merged"), modelDir, { "training_args.json": JSON.stringify(hfNamedArgs(resolved, WEITIAO_VERSION), null, 2) + "\n" });
      log(`saved the merged model (merge_and_unload) to ${join(outputDir, "merged")}`);
    }
    log(model.lora ? `saved the LoRA adapter (PEFT's layout) to ${outputDir}` : `saved model to ${outputDir}`);
    return { outputDir, model, tokenizer, labels: labelSet.names, result, eval: finalEval, test, reports };
  } finally {
    board?.close();
    lock.release();
  }
}

/** What a task's data preparation hands the training run: encoded splits, label names, the hygiene reports. */
interface PreparedData {
  trainEnc: EncodedExample[];
  evalEnc: EncodedExample[] | null;
  testEnc: EncodedExample[] | null;
  names: string[];
  /** Sequence tasks: single-label, multi-label or regression; null for token tasks. */
  problemType: ProblemType | null;
  reports: Record<string, DataReport>;
  /** Masked LM: how training examples are masked at each step. */
  masking?: MaskingSpec;
  /** false: the test file has no labels (--do-predict only predicts it). */
  testLabelled?: boolean;
}

type ResolvedOptions = TrainOptions & { textColumn: string; labelColumn: string; maxLength: number };

/** Text classification's data: rows of text (and pair) with a label, from CSV/TSV/JSONL. */
function prepareClassificationData(o: ResolvedOptions, config: BertConfig, tokenizer: BertTokenizer, maxLength: number, log: (line: string) => void): PreparedData {
  // Data: everything is read and checked before any output is written.
  const cols = { textColumn: o.textColumn, textPairColumn: o.textPairColumn, labelColumn: o.labelColumn };
  const trainRead = extractExamples(readRowsMany(o.trainFile, { noHeader: o.noHeader, quoting: o.quoting }), cols, true);
  if (trainRead.examples.length === 0) throw new WeitiaoError(`${o.trainFile}: no usable rows (every row was skipped)`);
  const labelSet = resolveLabels(trainRead.examples, config, o.problemType);
  let trainExamples = trainRead.examples;
  let trainLabels = labelTargets(trainExamples, labelSet);
  let evalRead: { examples: TextExample[]; skipped: SkippedRow[] } | null = null;
  if (o.validationFile) evalRead = extractExamples(readRowsMany(o.validationFile, { noHeader: o.noHeader, quoting: o.quoting }), cols, true);
  if (o.validationSplit) {
    // Stratified by class for single-label data, by the raw label string for multi-label, not at all for regression.
    const rawIndex = new Map([...new Set(trainExamples.map((e) => e.rawLabel))].map((l, i) => [l, i]));
    const strata = labelSet.problemType === "single_label_classification"
      ? trainLabels.ids
      : Int32Array.from(trainExamples, (e) => (labelSet.problemType === "regression" ? 0 : rawIndex.get(e.rawLabel)!));
    const split = stratifiedSplit(strata, o.validationSplit, o.seed ?? 42);
    evalRead = { examples: split.validation.map((i) => trainExamples[i]!), skipped: [] };
    trainExamples = split.train.map((i) => trainExamples[i]!);
    trainLabels = labelTargets(trainExamples, labelSet);
    log(`validation: ${evalRead.examples.length} rows held out of ${o.trainFile} (--validation-split ${o.validationSplit}, stratified)`);
  }
  const evalLabels = evalRead ? labelTargets(evalRead.examples, labelSet) : null;
  // With --do-predict the test file may come without labels (HF's predict step): then only predictions, no test_ metrics
  const testRead = o.testFile ? extractExamples(readRowsMany(o.testFile, { noHeader: o.noHeader, quoting: o.quoting }), cols, !o.doPredict) : null;
  const testLabelled = testRead !== null && testRead.examples.every((e) => e.rawLabel !== null && e.rawLabel !== "");
  if (testRead && !testLabelled && testRead.examples.some((e) => e.rawLabel)) {
    const e = testRead.examples.find((x) => !x.rawLabel)!;
    throw new WeitiaoError(`${e.file}:${e.line}: missing label (--test-file: label every row, or none of them to only predict with --do-predict)`);
  }
  const testLabels = testRead && testLabelled ? labelTargets(testRead.examples, labelSet) : null;
  const firstPair = [trainRead, evalRead, testRead].flatMap((r) => r?.examples ?? []).find((e) => e.pair !== null);
  // BERT types a pair's second text 1; RoBERTa's tokenizers type everything 0, DistilBERT reads no types at all.
  const typeTable = familyOfConfig(config).embeddings(config).tokenType ? config.type_vocab_size : Infinity;
  if (firstPair && tokenizer.pairTypeId >= typeTable) {
    throw new WeitiaoError(`${firstPair.file}:${firstPair.line}: this row has a text pair but the model's type_vocab_size is ${config.type_vocab_size} (config.json): it cannot take pairs`);
  }
  // Tokenise a split and describe it in the hygiene report.
  const reports: Record<string, DataReport> = {};
  const encodeSplit = (name: string, read: { examples: TextExample[]; skipped: SkippedRow[] }, labels: LabelTargets | null): EncodedExample[] => {
    const enc = encodeExamples(tokenizer, read.examples, labels, maxLength, o.truncation ?? "longest_first");
    reports[name] = dataReport(read.examples, read.skipped, enc.encoded, enc.stats.truncated, labelSet.names);
    return enc.encoded;
  };
  const trainEnc = encodeSplit("train", { examples: trainExamples, skipped: trainRead.skipped }, trainLabels);
  const evalEnc = evalRead ? encodeSplit("validation", evalRead, evalLabels!) : null;
  const testEnc = testRead ? encodeSplit("test", testRead, testLabels) : null;
  for (const [name, r] of Object.entries(reports)) for (const line of reportLines(name, r, maxLength)) log(line);
  if (o.metricForBestModel) {
    const known: Record<string, string[]> = {
      single_label_classification: ["loss", "accuracy", "macro_precision", "macro_recall", "macro_f1"],
      multi_label_classification: ["loss", "micro_f1", "macro_f1", "subset_accuracy"],
      regression: ["loss", "mse", "pearson"],
    };
    const k = metricKey(o.metricForBestModel, labelSet.problemType);
    check(known[labelSet.problemType]!.includes(k), `--metric-for-best-model ${o.metricForBestModel}: not a metric of ${labelSet.problemType} (${known[labelSet.problemType]!.join(", ")})`);
  }

  return { trainEnc, evalEnc, testEnc, testLabelled, names: labelSet.names, problemType: labelSet.problemType, reports };
}

/** Token classification's data (src/data/tokens.ts): words with a tag each, aligned to word pieces as run_ner does. */
function prepareTokenData(o: ResolvedOptions, config: BertConfig, tokenizer: BertTokenizer, maxLength: number, log: (line: string) => void): PreparedData {
  const train = readTokenRows(o.trainFile, true);
  let evalRead = o.validationFile ? readTokenRows(o.validationFile, true) : null;
  let trainExamples = train.examples;
  if (o.validationSplit) {
    const split = stratifiedSplit(new Int32Array(trainExamples.length), o.validationSplit, o.seed ?? 42);
    evalRead = { examples: split.validation.map((i) => trainExamples[i]!), overlappingSpans: 0 };
    trainExamples = split.train.map((i) => trainExamples[i]!);
    log(`validation: ${evalRead.examples.length} rows held out of ${o.trainFile} (--validation-split ${o.validationSplit})`);
  }
  const testRead = o.testFile ? readTokenRows(o.testFile, true) : null;
  // Only a token-classification folder's labels are tag names (a sentiment model's 负面/正面 are not)
  const tagFolder = config.architectures?.[0]?.endsWith("ForTokenClassification") ?? false;
  const modelLabels = !tagFolder || hasGenericLabels(config) ? null : labelNames(config);
  const names = resolveTagNames([...trainExamples, ...(evalRead?.examples ?? []), ...(testRead?.examples ?? [])], modelLabels);
  const scheme = tagScheme(trainExamples);
  log(scheme === "unprefixed"
    ? "warning: tags without B-/I-/E-/S- prefixes: entity scores read a tag's first letter as its prefix, as seqeval does; write BIO tags (B-PER, I-PER)"
    : `tagging scheme: ${scheme}`);
  const reports: Record<string, DataReport> = {};
  const encodeSplit = (name: string, examples: TokenExample[], overlapping: number): EncodedExample[] => {
    // Windows (--stride) for the rows training learns from; evaluation scores whole rows as run_ner does
    const all = encodeTokenExamples(tokenizer, examples, names, maxLength, o.labelAllTokens ?? false, name === "train" ? o.stride : undefined);
    if (all.windowedRows) log(`notice: ${name}: ${all.windowedRows} row(s) longer than --max-length ${maxLength} were split into ${all.windows} windows overlapping by up to ${o.stride} token(s) (--stride)`);
    // A row with no labelled token (no words, or only spaces) adds nothing to the loss: skipped and reported
    const empty = all.encoded.flatMap((e, i) => (e.tokenLabels!.some((l) => l >= 0) ? [] : [`${examples[all.sources[i]!]!.file}:${examples[all.sources[i]!]!.line}`]));
    const enc = { ...all, encoded: all.encoded.filter((e) => e.tokenLabels!.some((l) => l >= 0)) };
    if (empty.length) log(`notice: ${name}: ${empty.length} row(s) with no word that yields a token were skipped (first: ${empty[0]})`);
    const lengths = enc.encoded.map((e) => e.inputIds.length).sort((a, b) => a - b);
    const at = (q: number): number => percentile(lengths, q);
    const tags: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
    for (const e of examples) for (const t of e.tags ?? []) {
      const name = /^\d+$/.test(t) && !(t in tags) ? names[Number(t)]! : t;
      if (name in tags) tags[name]!++;
    }
    const skipped: Record<string, string[]> = overlapping ? { [`CLUENER spans overlapping an earlier span (${overlapping}), left out`]: [] } : {};
    if (empty.length) skipped["no word that yields a token"] = empty;
    reports[name] = { rows: enc.encoded.length, skipped, duplicates: { count: 0, examples: [] }, lengths: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: lengths.at(-1) ?? 0 }, truncated: enc.truncatedRows, labels: tags };
    if (enc.truncatedRows) log(`notice: ${name}: ${enc.truncatedRows} row(s) longer than --max-length ${maxLength} were cut, ${enc.truncatedWords} word(s) lost their tags`);
    if (overlapping) log(`notice: ${name}: ${overlapping} CLUENER span(s) overlapping an earlier span were left out`);
    return enc.encoded;
  };
  const trainEnc = encodeSplit("train", trainExamples, train.overlappingSpans);
  if (trainEnc.length === 0) throw new WeitiaoError(`${o.trainFile}: no usable rows (none has a word that yields a token)`);
  const evalEnc = evalRead ? encodeSplit("validation", evalRead.examples, evalRead.overlappingSpans) : null;
  const testEnc = testRead ? encodeSplit("test", testRead.examples, testRead.overlappingSpans) : null;
  for (const [name, r] of Object.entries(reports)) for (const line of reportLines(name, r, maxLength)) log(line);
  if (o.metricForBestModel) {
    const known = ["loss", "precision", "recall", "f1", "accuracy"];
    check(known.includes(o.metricForBestModel.replace(/^eval_/, "")), `--metric-for-best-model ${o.metricForBestModel}: not a metric of token-classification (${known.join(", ")})`);
  }
  return { trainEnc, evalEnc, testEnc, names, problemType: null, reports };
}

/**
 * Masked LM's data (data/mlm.ts): plain .txt lines, or the text column of CSV/TSV/JSONL, tokenized with their own
 * special tokens, then run_mlm's group_texts blocks (or one example per line with --line-by-line). Validation text is
 * masked once (from --seed), so that every evaluation scores the same masks; training masks are drawn at each step.
 */
async function prepareMlmData(o: ResolvedOptions, tokenizer: BertTokenizer, maxLength: number, log: (line: string) => void): Promise<PreparedData> {
  check(tokenizer.maskId !== null, "--task fill-mask: the tokenizer has no mask token ([MASK] or <mask>)");
  const lineByLine = o.lineByLine ?? false;
  const probability = o.mlmProbability ?? 0.15;
  const segment = o.wholeWordMask ? await loadSegmenter() : null;
  const masking = maskingSpec(tokenizer, probability, o.wholeWordMask ?? false);
  // run_mlm reads the text column alone: a label column (CLUENER's objects included) is not looked at
  const cols = { textColumn: o.textColumn, labelColumn: "\u0000", textPairColumn: undefined, keepEmptyText: !lineByLine };
  const read = (spec: string) => extractExamples(readRowsMany(spec, { noHeader: o.noHeader, quoting: o.quoting, plainText: true }), cols, false);
  const trainRead = read(o.trainFile);
  let trainTexts = trainRead.examples;
  let evalRead = o.validationFile ? read(o.validationFile) : null;
  if (o.validationSplit) {
    // run_mlm's validation_split_percentage: rows held out before tokenizing
    const split = stratifiedSplit(new Int32Array(trainTexts.length), o.validationSplit, o.seed ?? 42);
    evalRead = { examples: split.validation.map((i) => trainTexts[i]!), skipped: [] };
    trainTexts = split.train.map((i) => trainTexts[i]!);
    log(`validation: ${evalRead.examples.length} rows held out of ${o.trainFile} (--validation-split ${o.validationSplit})`);
  }
  const testRead = o.testFile ? read(o.testFile) : null;
  const reports: Record<string, DataReport> = {};
  const encodeSplit = (name: string, file: string, examples: TextExample[], skipped: SkippedRow[]): MlmExample[] => {
    const { blocks, tokens, truncated } = mlmBlocks(tokenizer, examples.map((e) => e.text), maxLength, lineByLine, segment);
    if (blocks.length === 0) {
      throw new WeitiaoError(lineByLine || examples.length === 0
        ? `${file}: ${name} has no text (every line is empty)`
        : `${file}: ${name} has ${tokens} tokens, too few for one block of --max-length ${maxLength} (group_texts drops the remainder): lower --max-length, add text, or use --line-by-line`);
    }
    if (!blocks.some((b) => b.inputIds.some((id) => !masking.specialIds.has(id)))) {
      throw new WeitiaoError(`${file}: ${name} holds special tokens only at --max-length ${maxLength}: nothing can be masked (raise --max-length)`);
    }
    const byReason: Record<string, string[]> = {};
    for (const r of skipped) (byReason[r.reason] ??= []).push(`${r.file}:${r.line}`);
    const lengths = blocks.map((b) => b.inputIds.length).sort((a, b) => a - b);
    reports[name] = {
      rows: examples.length + skipped.length, skipped: byReason, duplicates: { count: 0, examples: [] },
      lengths: { p50: percentile(lengths, 0.5), p90: percentile(lengths, 0.9), p99: percentile(lengths, 0.99), max: lengths.at(-1) ?? 0 }, truncated, labels: {},
    };
    const kept = lineByLine ? blocks.reduce((n, b) => n + b.inputIds.length, 0) : blocks.length * maxLength;
    log(`${name}: ${examples.length} text(s), ${tokens} tokens → ${blocks.length} ${lineByLine ? "line(s)" : `block(s) of ${maxLength} tokens`}` +
      (lineByLine ? (truncated ? `; ${truncated} line(s) cut at --max-length ${maxLength}` : "") : `; ${tokens - kept} token(s) of remainder dropped`) +
      (skipped.length ? `; ${skipped.length} empty line(s) skipped` : ""));
    return blocks;
  };
  const trainEnc = encodeSplit("train", o.trainFile, trainTexts, trainRead.skipped);
  // Fixed masks for evaluation: the same tokens scored at every evaluation, and in predict-free reruns
  const fixMasks = (blocks: MlmExample[], salt: number, name: string): EncodedExample[] => {
    const masked = fixedMasks(blocks, masking, o.seed ?? 42, salt);
    if (!masked.some((e) => e.tokenLabels!.some((l) => l >= 0))) throw new WeitiaoError(`${name}: no token was chosen for masking (too little text at --mlm-probability ${probability}): its loss would be undefined; add text`);
    return masked;
  };
  const evalEnc = evalRead ? fixMasks(encodeSplit("validation", o.validationFile ?? o.trainFile, evalRead.examples, evalRead.skipped), 0, "validation") : null;
  const testEnc = testRead ? fixMasks(encodeSplit("test", o.testFile!, testRead.examples, testRead.skipped), 1, "test") : null;
  log(`masking: ${probability} of the tokens per step (80% ${tokenizer.mask!.token}, 10% random of ${tokenizer.length}, 10% kept)${masking.wholeWord ? ", whole words (jieba)" : ""}`);
  if (o.metricForBestModel) {
    const known = ["loss", "accuracy", "perplexity"];
    check(known.includes(o.metricForBestModel.replace(/^eval_/, "")), `--metric-for-best-model ${o.metricForBestModel}: not a metric of fill-mask (${known.join(", ")})`);
  }
  return { trainEnc, evalEnc, testEnc, names: [], problemType: null, reports, masking };
}

/** The LoRA options of a run with --strategy lora (none with --adapter, whose config sets them); the LoRA flags without it are refused. */
function loraOptionsOf(given: TrainOptions, strategy: string): LoraOptions | null {
  const flags: [keyof TrainOptions, string][] = [["loraR", "--lora-r"], ["loraAlpha", "--lora-alpha"], ["loraDropout", "--lora-dropout"], ["loraTargetModules", "--lora-target-modules"],
    ["useRslora", "--use-rslora"], ["modulesToSave", "--modules-to-save"], ["mergeLora", "--merge-lora"], ["adapter", "--adapter"]];
  // A value equal to the default (as training_args.json replayed through --config holds them) is no request
  const defaults = withDefaults({}) as Record<string, unknown>;
  const set = flags.filter(([k]) => given[k] !== undefined && given[k] !== null && given[k] !== false && given[k] !== defaults[k]);
  check(strategy === "lora" || set.length === 0, `${set[0]?.[1]} applies to --strategy lora, not ${strategy}`);
  if (strategy !== "lora") return null;
  if (given.adapter) {
    const fixed = set.filter(([k]) => k !== "adapter" && k !== "mergeLora");
    check(fixed.length === 0, `${fixed[0]?.[1]}: the adapter's adapter_config.json sets it when continuing --adapter`);
    return null;
  }
  const list = (v: string | undefined): string[] | undefined => v?.split(",").map((x) => x.trim()).filter(Boolean);
  return {
    r: given.loraR ?? LORA_DEFAULTS.r, alpha: given.loraAlpha ?? LORA_DEFAULTS.alpha, dropout: given.loraDropout ?? LORA_DEFAULTS.dropout,
    targetModules: given.loraTargetModules?.trim().toLowerCase() === "all-linear" ? "all-linear" : list(given.loraTargetModules) ?? null,
    useRslora: given.useRslora ?? false, modulesToSave: list(given.modulesToSave) ?? [],
  };
}

/** HF's end-of-train metrics (Trainer.train's TrainOutput.metrics): throughput over this process's steps, the run's mean loss. */
export function runSummary(r: TrainResult): { train_runtime: number; train_samples_per_second: number; train_steps_per_second: number; train_loss: number; epoch: number } {
  const secs = Math.max(r.trainSeconds, 1e-3);
  return {
    train_runtime: r.trainSeconds, train_samples_per_second: r.samplesSeen / secs, train_steps_per_second: r.stepsRun / secs,
    train_loss: r.trainLoss, epoch: r.epochs.length ? r.epochs[r.epochs.length - 1]!.epoch : 0,
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
