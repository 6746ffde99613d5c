/**
 * The training loop: HF Trainer semantics (linear warmup/decay, AdamW with decay groups, global-norm clipping,
 * gradient accumulation, logging every N steps with HF's log_history format) plus freezing strategies.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { FArray } from "../backend/types.js";
import type { TaskModel } from "../model/task-model.js";
import { collate, type EncodedExample, lengthSortedCollated } from "../data/dataset.js";
import { lengthGroupedOrder } from "../data/split.js";
import { Rng, stepSeed } from "../util/rng.js";
import { type MaskingSpec, maskExample, maskRng } from "../data/mlm.js";
import { WeitiaoError } from "../util/errors.js";
import type { ClassificationMetrics } from "./metrics.js";
import type { ClassPrediction } from "../model/heads/classification.js";
import { type EntityScores, seqeval } from "./seqeval.js";
import { classWeighted, labelSmoothed } from "./loss.js";
import { labelNames } from "../model/config.js";
import { AdamW, type AdamWOptions, clipCoefficient } from "./optimizer.js";
import { type OptimizerName, parseOptimArgs } from "./optimizers.js";
import { learningRateAt, type LrScheduler, type PlateauState, plateauStart, plateauStep, schedulerKwargs, warmupSteps } from "./schedule.js";
import { type OptionSpec, TRAIN_OPTIONS } from "./options.js";
import { checkStrategyApplies, layerLrScale, type Strategy, trainablePredicate } from "./strategy.js";

export interface TrainingArgs {
  epochs: number;
  /** Overrides epochs when > 0. */
  maxSteps: number;
  batchSize: number;
  evalBatchSize: number;
  learningRate: number;
  /** AdamW's betas and epsilon (HF's adam_beta1, adam_beta2, adam_epsilon). */
  adamBeta1: number;
  adamBeta2: number;
  adamEpsilon: number;
  /** HF's label_smoothing_factor: the training loss's targets become (1−ε)·onehot + ε/C. */
  labelSmoothingFactor: number;
  /** Single-label classification: "balanced" (sklearn's n/(C·count)) or one weight per class, "w0,w1,…". */
  classWeights?: string;
  /** HF's optim (optimizers.ts; default adamw_torch) and optim_args. */
  optim?: OptimizerName;
  optimArgs?: string;
  /** HF's lr_scheduler_type (schedule.ts) and its scheduler_specific_kwargs as JSON. */
  lrSchedulerType: LrScheduler;
  lrSchedulerKwargs?: string;
  warmupSteps?: number;
  warmupRatio?: number;
  weightDecay: number;
  maxGradNorm: number;
  gradientAccumulationSteps: number;
  seed: number;
  shuffle: boolean;
  strategy: Strategy;
  topK?: number;
  layerLrDecay?: number;
  loggingSteps: number;
  /**
   * With strategy "head": compute the frozen encoder's pooled output once per example (eval mode, so no dropout
   * inside the encoder) and train the classifier on those; later epochs then cost almost nothing. PyTorch's
   * tutorial keeps dropout active inside the frozen encoder (model.train()); false reproduces that. Both are
   * identical at dropout 0.
   */
  cacheFeatures: boolean;
  /** Checkpoint every N steps (0: never). */
  saveSteps: number;
  /** "epoch": also checkpoint after each epoch; "best": whenever an evaluation improves the best metric. */
  saveStrategy: "no" | "steps" | "epoch" | "best";
  /** HF's save_only_model: checkpoints without optimizer state. */
  saveOnlyModel: boolean;
  /** HF's data_seed: the data order's own seed (default: seed). */
  dataSeed?: number;
  /** HF's dataloader_drop_last: an epoch's incomplete last batch is dropped. */
  dataloaderDropLast: boolean;
  /** HF's eval_on_start: one evaluation before the first step. */
  evalOnStart: boolean;
  /** HF's logging_strategy and logging_first_step. */
  loggingStrategy: "no" | "steps" | "epoch";
  loggingFirstStep: boolean;
  /** Batch rows of similar length together (HF group_by_length): less padding, same randomness between groups. */
  groupByLength: boolean;
  /** Multi-label: a label is predicted when its probability is at least this. */
  threshold: number;
  /** When to evaluate on the validation set (with one): after every epoch (default), every evalSteps, or never. */
  evalStrategy: "no" | "steps" | "epoch";
  evalSteps: number;
  /** Metric that picks the best model ("accuracy", "macro_f1", "loss", …; eval_ prefix optional). */
  metricForBestModel?: string;
  /** HF's greater_is_better: whether a larger best-model metric is better (default: all but loss and MSE). */
  greaterIsBetter?: boolean;
  /** Restore the best evaluation's weights when training ends. */
  loadBestModelAtEnd: boolean;
  /** Stop after this many evaluations without improvement (0: never). */
  earlyStoppingPatience: number;
}

/** The declared defaults of the training options (options.ts), which the CLI and the API share. */
export const DEFAULT_TRAINING_ARGS: TrainingArgs = {
  ...(Object.fromEntries((TRAIN_OPTIONS as readonly OptionSpec[]).filter((s) => s.training && s.default !== undefined).map((s) => [s.key, s.default])) as unknown as TrainingArgs),
  saveStrategy: "no", evalSteps: 0, earlyStoppingPatience: 0,
};

/** The metric that selects the best model, and whether larger is better (losses and MSE: smaller). */
export function bestMetricOf(args: TrainingArgs, problemType: string | null | undefined, tokens = false): { key: string; greaterIsBetter: boolean } {
  // Token tasks follow HF (the loss); sequence tasks keep their own defaults
  const fallback = tokens ? "loss" : problemType === "regression" ? "mse" : problemType === "multi_label_classification" ? "micro_f1" : "accuracy";
  const key = metricKey(args.metricForBestModel ?? fallback, problemType, tokens);
  return { key, greaterIsBetter: args.greaterIsBetter ?? !(key === "loss" || key === "mse" || key === "perplexity") };
}

/**
 * A --metric-for-best-model name as the task reports it: HF's eval_ prefix stripped, and the plain "f1" (or
 * precision/recall) of HF's examples resolved to the task's own: macro for single-label, micro for multi-label.
 */
export function metricKey(name: string, problemType: string | null | undefined, tokens = false): string {
  const k = name.replace(/^eval_/, "");
  if (tokens || !["f1", "precision", "recall"].includes(k)) return k;
  if (problemType === "multi_label_classification") return k === "f1" ? "micro_f1" : k;
  return `macro_${k}`;
}
export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
}

export interface EvalLog {
  step: number;
  epoch: number;
  eval_loss: number;
  [metric: string]: number;
}

export interface EpochSummary {
  epoch: number;
  loss: number;
  accuracy: number;
  eval?: EvalLog;
  seconds: number;
}

export interface EvalResult {
  loss: number;
  /** Single-label accuracy, multi-label subset accuracy, NaN for regression. */
  accuracy: number;
  /** Every scalar metric of the task (accuracy, macro_f1, …; micro_f1, …; mse, pearson). */
  metrics: Record<string, number>;
  /** Per-class numbers and the confusion matrix (single-label only). */
  classification: ClassificationMetrics | null;
  /** Token tasks: seqeval's scores per entity type. */
  entities?: Record<string, EntityScores>;
  /** Token tasks: reference entity types against predicted ones, span for span (seqeval.ts). */
  entityConfusion?: { types: string[]; matrix: number[][] };
  logits: Float32Array;
  probabilities: Float32Array;
  predictions: Int32Array;
}

export interface TrainResult {
  globalStep: number;
  epochs: EpochSummary[];
  logHistory: (StepLog | EvalLog)[];
  totalSteps: number;
  trainSeconds: number;
  /** HF's train_loss: the mean of every optimizer step's loss over the whole run (resumed steps included). */
  trainLoss: number;
  /** Examples trained on by this process (a resumed run's earlier steps not counted): train_samples_per_second's numerator. */
  samplesSeen: number;
  /** Optimizer steps run by this process. */
  stepsRun: number;
  /** True when requestStop() ended the run early (a checkpoint was saved). */
  interrupted: boolean;
  /** True when early stopping ended the run. */
  earlyStopped?: boolean;
  /** The best evaluation: its metric name, value and step; `restored` when its weights were loaded at the end. */
  best?: { metric: string; value: number; step: number; restored: boolean };
  /**
   * The built-in evaluation of the weights training ended with, when the last evaluation already saw them (an
   * evaluation after the final step, no best model restored): a final evaluation need not run again.
   */
  finalEval?: EvalResult;
}

/**
 * Everything the loop needs to continue exactly where it stopped (JSON-serialisable; saved in checkpoints).
 * `epochRngState` is the shuffling generator's state at the start of the current epoch.
 */
export interface LoopState {
  step: number;
  epoch: number;
  stepInEpoch: number;
  epochRngState: number;
  lossSinceLog: number;
  stepsSinceLog: number;
  epochLoss: number;
  epochSteps: number;
  /** Σ of every step's loss since the run began (absent in checkpoints written before it existed). */
  runLoss?: number;
  correct: number;
  seen: number;
  epochSeconds: number;
  history: (StepLog | EvalLog)[];
  epochs: EpochSummary[];
  /** Best evaluation so far (by the best-model metric), its step, and evaluations since it improved. */
  best?: { metric: number; step: number; sinceImproved: number };
  /** Steps that had nothing to predict and made no update (not in the mean train loss). */
  skippedSteps?: number;
  /** --lr-scheduler-type reduce_lr_on_plateau: its state (the lr, stepped by each evaluation). */
  plateau?: PlateauState;
}

export interface TrainerHooks {
  /** A line for the user (epoch summaries, notices). */
  log?: (line: string) => void;
  /** Called with each entry of log_history as it is added (step logs, evaluations): TensorBoard's writer. */
  onLog?: (entry: StepLog | EvalLog) => void;
  /** Called after each optimizer step. */
  onStep?: (info: { step: number; totalSteps: number; epoch: number; loss: number; lr: number; samples: number }) => void;
  onEpochStart?: (epoch: number, stepsInEpoch: number) => void;
  /** Called with each epoch's summary and its tutorial-style line; when absent the line goes to `log`. */
  onEpochEnd?: (summary: EpochSummary, line: string) => void;
  /** Replaces the evaluation on the validation set (tests use it to play a crafted validation curve). */
  evaluate?: () => EvalResult;
  /** Save a checkpoint now (model, optimizer and this loop state): every saveSteps, each epoch, or on stop. */
  onSave?: (state: LoopState, reason: "steps" | "epoch" | "best" | "interrupt") => void;
}

/**
 * Run the model in eval mode over examples: mean loss and the task's metrics. With `labelSmoothing` the loss is the
 * smoothed one, as HF's Trainer reports the evaluation loss of a run with label_smoothing_factor.
 */
export function evaluate(model: TaskModel, examples: EncodedExample[], batchSize: number, padId: number, threshold = 0.5, labelSmoothing = 0): EvalResult {
  if (model.head.reads === "tokens") return evaluateTokens(model, examples, batchSize, padId, labelSmoothing);
  if (model.head.reads === "selected") return evaluateMasked(model, examples, batchSize, padId, labelSmoothing);
  const C = model.head.outputs;
  const n = examples.length;
  const logits = new Float32Array(n * C);
  const probabilities = new Float32Array(n * C);
  const predictions = new Int32Array(n);
  const labels = new Int32Array(n);
  const targets = new Float32Array(n * C);
  let lossSum = 0;
  for (const { rows, batch } of lengthSortedCollated(examples, batchSize, padId)) {
    const out = model.forward(batch.input, { train: false });
    const t = model.head.loss(model.backend, model.dtype, out.logits, batch, rows.length, threshold);
    lossSum += labelSmoothing > 0 ? labelSmoothed(model.dtype, t.probs, batch.labels, rows.length, C, labelSmoothing).sum : t.sum;
    rows.forEach((i, b) => {
      logits.set(out.logits.subarray(b * C, b * C + C), i * C);
      probabilities.set(t.probs.subarray(b * C, b * C + C), i * C);
      labels[i] = batch.labels[b]!;
      if (batch.targets) targets.set(batch.targets.subarray(b * C, b * C + C), i * C);
      predictions[i] = model.head.predictRow(out.logits, b * C);
    });
  }
  const names = labelNames(model.config);
  const { metrics, detail } = model.head.metrics({ rows: n, logits, probabilities, predictions, labels, targets }, names, threshold);
  const accuracy = metrics.accuracy ?? metrics.subset_accuracy ?? NaN;
  // Only the classification head reports per-class detail (heads/classification.ts)
  const classification = detail as ClassificationMetrics | null;
  return { loss: n ? lossSum / n : NaN, accuracy, metrics, classification, logits, probabilities, predictions };
}

/**
 * Token tasks: the mean loss over labelled tokens, and seqeval's entity precision/recall/F1 with word accuracy over
 * the labelled tokens' tags (each word's first piece), as run_ner's compute_metrics reports them.
 */
function evaluateTokens(model: TaskModel, examples: EncodedExample[], batchSize: number, padId: number, labelSmoothing = 0): EvalResult {
  const C = model.head.outputs;
  const names = labelNames(model.config);
  const gold: string[][] = new Array(examples.length);
  const predicted: string[][] = new Array(examples.length);
  let lossSum = 0;
  let count = 0;
  for (const { rows, batch } of lengthSortedCollated(examples, batchSize, padId)) {
    const out = model.forward(batch.input, { train: false });
    const T = batch.input.seqLen;
    const t = model.head.loss(model.backend, model.dtype, out.logits, batch, rows.length * T, 0.5);
    lossSum += labelSmoothing > 0 ? labelSmoothed(model.dtype, t.probs, batch.labels, rows.length * T, C, labelSmoothing).sum : t.sum;
    count += t.count;
    rows.forEach((i, b) => {
      const g: string[] = [];
      const p: string[] = [];
      for (let k = 0; k < T; k++) {
        const label = batch.labels[b * T + k]!;
        if (label < 0) continue;
        g.push(names[label]!);
        p.push(names[model.head.predictRow(out.logits, (b * T + k) * C)]!);
      }
      gold[i] = g;
      predicted[i] = p;
    });
  }
  const s = seqeval(gold, predicted);
  const metrics = { precision: s.precision, recall: s.recall, f1: s.f1, accuracy: s.accuracy };
  const none = new Float32Array(0);
  return { loss: count ? lossSum / count : NaN, accuracy: s.accuracy, metrics, classification: null, entities: s.perType, entityConfusion: s.confusion, logits: none, probabilities: none, predictions: new Int32Array(0) };
}

/**
 * --do-predict: each example's prediction as text — its label (multi-label: the labels at the threshold, joined by
 * "|"; regression: the value), or for token tasks the tags of its labelled tokens (each word's first piece), space-
 * separated as run_ner's predictions.txt. Labels, where the examples have them, are not read.
 */
export function predictLabels(model: TaskModel, examples: EncodedExample[], batchSize: number, padId: number, threshold = 0.5): string[] {
  const names = labelNames(model.config);
  const C = model.head.outputs;
  const out: string[] = new Array(examples.length);
  for (const { rows, batch } of lengthSortedCollated(examples, batchSize, padId)) {
    const { logits } = model.forward(batch.input, { train: false });
    const T = batch.input.seqLen;
    rows.forEach((i, b) => {
      if (model.head.reads === "tokens") {
        const tags: string[] = [];
        for (let k = 0; k < T; k++) if (batch.labels[b * T + k]! >= 0) tags.push(names[model.head.predictRow(logits, (b * T + k) * C)]!);
        out[i] = tags.join(" ");
        return;
      }
      const p = model.head.prediction(Array.from(logits.subarray(b * C, b * C + C)), names, { threshold }) as ClassPrediction;
      out[i] = p.labels ? p.labels.join("|") : p.label ?? String(p.score);
    });
  }
  return out;
}

/**
 * Masked LM (examples masked already: tokenLabels set): the mean loss over the masked tokens, their accuracy, and
 * run_mlm's perplexity exp(loss).
 */
function evaluateMasked(model: TaskModel, examples: EncodedExample[], batchSize: number, padId: number, labelSmoothing = 0): EvalResult {
  let lossSum = 0;
  let count = 0;
  let correct = 0;
  for (const { batch } of lengthSortedCollated(examples, batchSize, padId, true)) {
    if (batch.labels.length === 0) continue;
    const out = model.forward(batch.input, { train: false });
    const t = model.head.loss(model.backend, model.dtype, out.logits, batch, batch.labels.length, 0.5);
    lossSum += labelSmoothing > 0 ? labelSmoothed(model.dtype, t.probs, batch.labels, batch.labels.length, model.head.outputs, labelSmoothing).sum : t.sum;
    count += t.count;
    correct += t.correct;
  }
  const loss = count ? lossSum / count : NaN;
  const none = new Float32Array(0);
  const accuracy = count ? correct / count : NaN;
  return { loss, accuracy, metrics: { accuracy, perplexity: Math.exp(loss) }, classification: null, logits: none, probabilities: none, predictions: new Int32Array(0) };
}

/** What an example adds to its step's loss denominator: 1, or its labelled tokens (token tasks). */
function lossUnits(e: EncodedExample, classWeights: number[] | null): number {
  if (e.tokenLabels) return e.tokenLabels.reduce((n, l) => n + (l >= 0 ? 1 : 0), 0);
  return classWeights ? classWeights[e.label]! : 1;
}

/**
 * --class-weights as weights per class: "balanced" is sklearn's compute_class_weight (n / (C · count_c)), else C
 * comma-separated non-negative numbers. torch's CrossEntropyLoss(weight=w) then averages Σ w_y·loss over Σ w_y.
 */
export function resolveClassWeights(spec: string, labels: ArrayLike<number>, classes: number, names: string[]): number[] {
  if (spec === "balanced") {
    const counts = new Array<number>(classes).fill(0);
    for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
    const missing = counts.findIndex((c) => c === 0);
    if (missing >= 0) throw new WeitiaoError(`--class-weights balanced: the training data has no row of class ${names[missing] ?? missing}`);
    return counts.map((c) => labels.length / (classes * c));
  }
  const w = spec.split(",").map((x) => Number(x.trim()));
  if (w.length !== classes || w.some((x) => !Number.isFinite(x) || x < 0) || w.every((x) => x === 0)) {
    throw new WeitiaoError(`--class-weights must be "balanced" or ${classes} non-negative numbers (one per class: ${names.join(", ")}), got "${spec}"`);
  }
  return w;
}

/** {accuracy: 1} → {eval_accuracy: 1}: HF's metric_key_prefix. */
export function prefixed(prefix: string, metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).map(([k, v]) => [`${prefix}${k}`, v]));
}

export class Trainer {
  readonly optimizer: AdamW;
  private readonly rng: Rng;
  private stopRequested = false;
  private resumeFrom: LoopState | null = null;
  /** Per class, the loss weight of --class-weights (null: unweighted). */
  private readonly classWeights: number[] | null = null;
  /** Masked LM: how the training examples without fixed masks (tokenLabels) are masked, afresh at every step. */
  private readonly masking: MaskingSpec | null;

  constructor(
    readonly model: TaskModel,
    readonly args: TrainingArgs,
    readonly trainSet: EncodedExample[],
    readonly evalSet: EncodedExample[] | null,
    readonly padId: number,
    readonly hooks: TrainerHooks = {},
    optimizerOptions: Partial<AdamWOptions> = {},
    masking: MaskingSpec | null = null,
  ) {
    this.masking = masking;
    if (model.head.reads === "selected" && !masking && trainSet.some((e) => !e.tokenLabels)) {
      throw new Error("masked-LM examples without fixed masks (tokenLabels) need a MaskingSpec");
    }
    checkStrategyApplies(args.strategy, model.numLayers, model.config.num_hidden_groups, args.layerLrDecay);
    if (model.lora && args.strategy !== "lora") throw new WeitiaoError(`a model with LoRA adapters trains with --strategy lora, not ${args.strategy}`);
    if (args.classWeights) {
      const pt = model.config.problem_type ?? "single_label_classification";
      if (model.head.reads !== "first" || pt !== "single_label_classification") throw new WeitiaoError("--class-weights applies to single-label classification");
      if (args.labelSmoothingFactor > 0) throw new WeitiaoError("--class-weights and --label-smoothing-factor together are not supported");
      const names = labelNames(model.config);
      this.classWeights = resolveClassWeights(args.classWeights, trainSet.map((e) => e.label), model.head.outputs, names);
      hooks.log?.(`class weights: ${names.map((n, i) => `${n} ${this.classWeights![i]!.toFixed(4)}`).join(", ")}`);
    }
    this.optimizer = new AdamW(model, {
      beta1: args.adamBeta1, beta2: args.adamBeta2, eps: args.adamEpsilon, weightDecay: args.weightDecay,
      optim: args.optim, optimArgs: parseOptimArgs(args.optim ?? "adamw_torch", args.optimArgs), ...optimizerOptions,
    });
    this.rng = new Rng(args.dataSeed ?? args.seed);
  }

  get batchesPerEpoch(): number {
    const n = this.trainSet.length / this.args.batchSize;
    return this.args.dataloaderDropLast && n >= 1 ? Math.floor(n) : Math.ceil(n);
  }

  /** Optimizer steps per epoch: HF does an update on the leftover micro-batches at an epoch's end. */
  get stepsPerEpoch(): number {
    return Math.max(1, Math.ceil(this.batchesPerEpoch / this.args.gradientAccumulationSteps));
  }

  get totalSteps(): number {
    // HF: max_steps = ceil(num_train_epochs · update steps per epoch), so 2.5 epochs stop half-way through the third
    return this.args.maxSteps > 0 ? this.args.maxSteps : Math.ceil(this.stepsPerEpoch * this.args.epochs);
  }

  /** Pooled encoder output of every training example, computed once in eval mode (see cacheFeatures). */
  private encodeTrainSet(): Float32Array[] {
    const { model, args } = this;
    const H = model.config.hidden_size;
    const features: Float32Array[] = new Array(this.trainSet.length);
    for (const { rows, batch } of lengthSortedCollated(this.trainSet, args.evalBatchSize, this.padId)) {
      const { pooled } = model.encode(batch.input, { train: false });
      rows.forEach((i, b) => (features[i] = Float32Array.from(pooled.subarray(b * H, b * H + H))));
    }
    return features;
  }

  /** The examples of one micro-batch; a masked LM's get this step's masks (fresh every epoch, the same on resume). */
  private batchOf(idx: number[], step: number, microBatch: number): EncodedExample[] {
    const batch = idx.map((i) => this.trainSet[i]!);
    if (!this.masking) return batch;
    const rng = maskRng(this.args.seed, step, microBatch);
    return batch.map((e) => (e.tokenLabels ? e : maskExample(e, this.masking!, rng)));
  }

  /** Forward + backward of one micro-batch; returns its summed loss and how many it got right. */
  private microStep(idx: number[], batch: EncodedExample[], features: Float32Array[] | null, seed: number, scale: number): { loss: number; correct: number } {
    const { model } = this;
    const H = model.config.hidden_size;
    const { input, labels, targets } = collate(batch, this.padId, model.head.reads === "selected");
    let logits: FArray;
    let backward: (d: FArray) => void;
    if (features) {
      const pooled = new Float32Array(idx.length * H);
      idx.forEach((i, b) => pooled.set(features[i]!, b * H));
      model.beginPass();
      const head = model.classify(pooled, idx.length, true, seed);
      logits = head.logits;
      backward = (d) => void model.classifyBackward(d, head.cache, false);
    } else {
      const out = model.forward(input, { train: true, dropoutSeed: seed });
      logits = out.logits;
      backward = (d) => model.backward(out.cache!, d);
    }
    const rows = logits.length / model.head.outputs;
    let t = model.head.loss(model.backend, model.dtype, logits, { labels, targets }, rows, this.args.threshold);
    if (this.classWeights) {
      const weighted = classWeighted(model.dtype, t.probs, labels, rows, model.head.outputs, this.classWeights);
      t = { ...t, sum: weighted.sum, grad: weighted.grad };
    }
    if (this.args.labelSmoothingFactor > 0) {
      // HF's LabelSmoother replaces the loss (and its gradient) of single-label and token classification
      const smooth = labelSmoothed(model.dtype, t.probs, labels, rows, model.head.outputs, this.args.labelSmoothingFactor);
      t = { ...t, sum: smooth.sum, grad: smooth.grad };
    }
    // The step's loss is the mean over all its examples, so each micro-batch contributes sum/n.
    backward(t.grad(scale));
    return { loss: t.sum, correct: t.correct };
  }

  private applyStrategy(epoch: number): void {
    this.model.setTrainable(trainablePredicate(this.args.strategy, this.model.numLayers, epoch, this.args.topK, this.model.lora));
  }

  /** Ask the loop to stop after the step in progress (SIGINT): it saves a checkpoint and returns. */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Continue from a checkpoint's loop state (model weights and optimizer state restored by the caller). */
  restore(state: LoopState): void {
    // A checkpoint of another run (more epochs, other data) cannot continue this one: its step is past our end or
    // its place in the epoch past our epoch's length.
    const total = this.totalSteps;
    if (state.step > total || state.stepInEpoch > this.stepsPerEpoch || state.epoch > Math.ceil(total / this.stepsPerEpoch) + 1) {
      throw new WeitiaoError(
        `the checkpoint is at step ${state.step} (epoch ${state.epoch}, step ${state.stepInEpoch} of it) but this run has ${total} steps ` +
          `of ${this.stepsPerEpoch} per epoch: resume with the options of the run that wrote it`,
      );
    }
    this.resumeFrom = structuredClone(state);
  }

  async train(): Promise<TrainResult> {
    const { args, model } = this;
    const log = this.hooks.log ?? (() => {});
    if (this.trainSet.length === 0) throw new Error("no training examples");
    const total = this.totalSteps;
    const warmup = warmupSteps(total, args.warmupSteps, args.warmupRatio);
    const scheduleKw = schedulerKwargs(args.lrSchedulerType, args.lrSchedulerKwargs, args.learningRate);
    const numEpochs = Math.ceil(total / this.stepsPerEpoch);
    const lrScales = model.params.specs.map((s) => layerLrScale(s.level, model.numLayers, args.layerLrDecay));
    const started = Date.now();
    const st: LoopState = this.resumeFrom ?? {
      step: 0, epoch: 1, stepInEpoch: 0, epochRngState: this.rng.state, lossSinceLog: 0, stepsSinceLog: 0,
      epochLoss: 0, epochSteps: 0, correct: 0, seen: 0, epochSeconds: 0, history: [], epochs: [],
    };
    if (args.lrSchedulerType === "reduce_lr_on_plateau") st.plateau ??= plateauStart(args.learningRate);
    let features: Float32Array[] | null = null;
    if (args.strategy === "head" && args.cacheFeatures && model.head.reads === "first") {
      log("strategy head: the frozen encoder's features are computed once (eval mode) and cached; --no-cache-features keeps PyTorch's train-mode encoder");
      features = this.encodeTrainSet();
    }
    let interrupted = false;
    let earlyStopped = false;
    let skippedEmpty = 0;
    let samplesSeen = 0;
    let stepsRun = 0;
    const hasEval = this.evalSet !== null && this.evalSet.length > 0 && args.evalStrategy !== "no";
    const { key: bestKey, greaterIsBetter } = bestMetricOf(args, model.config.problem_type, model.head.reads !== "first");
    let bestWeights: FArray | null = null;
    /** --save-strategy best: an evaluation improved the best metric; the checkpoint is written where the loop state is whole. */
    let saveBest = false;
    /** The last built-in evaluation and the step whose weights it saw. */
    let lastEval = null as { step: number; result: EvalResult } | null; // (set inside runEval)
    /** Evaluate, log, track the best model and early stopping; returns the eval entry. */
    const runEval = (epochFloat: number): EvalLog => {
      const ev = this.hooks.evaluate ? this.hooks.evaluate() : evaluate(model, this.evalSet!, args.evalBatchSize, this.padId, args.threshold, args.labelSmoothingFactor);
      lastEval = this.hooks.evaluate ? null : { step: st.step, result: ev };
      const entry: EvalLog = { step: st.step, epoch: epochFloat, eval_loss: ev.loss, ...prefixed("eval_", ev.metrics) };
      st.history.push(entry);
      this.hooks.onLog?.(entry);
      const value = bestKey === "loss" ? ev.loss : ev.metrics[bestKey];
      if (value === undefined) throw new WeitiaoError(`--metric-for-best-model ${bestKey}: not a metric of this task (${["loss", ...Object.keys(ev.metrics)].join(", ")})`);
      // HF steps ReduceLROnPlateau with metric_for_best_model, which that scheduler defaults to the loss
      if (st.plateau) st.plateau = plateauStep(st.plateau, args.metricForBestModel ? value : ev.loss, scheduleKw);
      if (!st.best || (greaterIsBetter ? value > st.best.metric : value < st.best.metric)) {
        st.best = { metric: value, step: st.step, sinceImproved: 0 };
        saveBest = args.saveStrategy === "best";
        if (args.loadBestModelAtEnd) {
          // one copy kept and overwritten: a BERT-base is 0.44 GB, not to be allocated anew at each improvement
          bestWeights ??= model.params.newBuffer();
          bestWeights.set(model.params.data);
        }
      } else {
        st.best.sinceImproved++;
        if (args.earlyStoppingPatience > 0 && st.best.sinceImproved >= args.earlyStoppingPatience) earlyStopped = true;
      }
      return entry;
    };

    if (hasEval && args.evalOnStart && st.step === 0) {
      // HF's eval_on_start: the untrained model's scores, logged at step 0 (not a best-model candidate)
      const ev = this.hooks.evaluate ? this.hooks.evaluate() : evaluate(model, this.evalSet!, args.evalBatchSize, this.padId, args.threshold, args.labelSmoothingFactor);
      const entry: EvalLog = { step: 0, epoch: 0, eval_loss: ev.loss, ...prefixed("eval_", ev.metrics) };
      st.history.push(entry);
      this.hooks.onLog?.(entry);
      log(`eval at start: ${Object.entries(entry).filter(([k]) => k.startsWith("eval_")).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" | ")}`);
    }
    for (; st.epoch <= numEpochs && st.step < total && !earlyStopped; st.epoch++) {
      const epochStart = Date.now() - st.epochSeconds * 1000;
      this.applyStrategy(st.epoch);
      // The epoch's order comes from the generator's state at its start, so a resumed run redraws the same one.
      this.rng.state = st.epochRngState;
      const order = args.groupByLength
        ? lengthGroupedOrder(this.trainSet.map((e) => e.inputIds.length), args.batchSize, this.rng)
        : args.shuffle ? this.rng.permutation(this.trainSet.length) : this.trainSet.map((_, i) => i);
      const batches: number[][] = [];
      for (let i = 0; i < order.length; i += args.batchSize) batches.push(order.slice(i, i + args.batchSize));
      if (args.dataloaderDropLast && batches.length > 1 && batches.at(-1)!.length < args.batchSize) batches.pop();
      this.hooks.onEpochStart?.(st.epoch, Math.min(this.stepsPerEpoch - st.stepInEpoch, total - st.step));

      for (; st.stepInEpoch < this.stepsPerEpoch && st.step < total; ) {
        const u = st.stepInEpoch;
        const micro = batches.slice(u * args.gradientAccumulationSteps, (u + 1) * args.gradientAccumulationSteps);
        const nExamples = micro.reduce((a, b) => a + b.length, 0);
        // The step's loss is the mean over what it labels (examples, or labelled tokens), pooled over its micro-batches
        // as HF's num_items_in_batch pools them.
        const examples = micro.map((idx, mi) => this.batchOf(idx, st.step, mi));
        const nUnits = examples.reduce((a, b) => a + b.reduce((c, e) => c + lossUnits(e, this.classWeights), 0), 0);
        // A step with nothing to predict (a masked LM's batch of texts too short to mask any token): HF's mean over no
        // tokens would be NaN. The step is counted (the schedule, logging and evaluation move on) but makes no update.
        const empty = nUnits === 0;
        if (empty && !skippedEmpty++) log(`notice: step ${st.step + 1}: nothing in its batch to predict (no token chosen for masking, or only zero-weight classes); such steps make no update`);
        const lr = st.plateau ? st.plateau.lr : learningRateAt(args.lrSchedulerType, args.learningRate, st.step, warmup, total, scheduleKw);
        let loss = NaN;
        let gradNorm = 0;
        if (!empty) {
          model.zeroGrad();
          let lossSum = 0;
          micro.forEach((idx, mi) => {
            // a micro-batch with nothing to predict adds nothing (the others' gradients stand)
            if (examples[mi]!.every((e) => lossUnits(e, this.classWeights) === 0)) return;
            const r = this.microStep(idx, examples[mi]!, features, stepSeed(args.seed, st.step, mi), 1 / nUnits);
            lossSum += r.loss;
            st.correct += r.correct;
          });
          st.seen += nUnits;
          loss = lossSum / nUnits;
          const clip = clipCoefficient(model, args.maxGradNorm);
          gradNorm = clip.norm;
          // HF trains on through a NaN and saves a broken model with exit 0; we stop before the update, so the weights
          // (and any checkpoint already written) are the last good ones.
          if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
            throw new WeitiaoError(
              `step ${st.step + 1} of ${total}: the loss is ${loss} and the gradient norm ${gradNorm}: training stopped before this ` +
                `step's update (lower --learning-rate, now ${args.learningRate}, or check the model's weights)`,
            );
          }
          this.optimizer.step(lr, (i) => lrScales[i]!, clip.coef); // clipping fused into the update
          st.epochLoss += loss;
          st.runLoss = (st.runLoss ?? 0) + loss;
          st.epochSteps++;
          st.lossSinceLog += loss;
          st.stepsSinceLog++;
        } else st.skippedSteps = (st.skippedSteps ?? 0) + 1;
        st.step++;
        st.stepInEpoch++;
        samplesSeen += nExamples;
        stepsRun++;
        const epochFloat = st.epoch - 1 + st.stepInEpoch / this.stepsPerEpoch;
        // HF logs the first step whatever the logging strategy
        const logNow = (args.loggingStrategy === "steps" && args.loggingSteps > 0 && st.step % args.loggingSteps === 0) || (args.loggingFirstStep && st.step === 1);
        if (st.stepsSinceLog > 0 && (logNow || (args.loggingStrategy === "epoch" && st.stepInEpoch === this.stepsPerEpoch))) {
          const entry: StepLog = { step: st.step, epoch: epochFloat, loss: st.lossSinceLog / st.stepsSinceLog, learning_rate: lr, grad_norm: gradNorm };
          st.history.push(entry);
          this.hooks.onLog?.(entry);
          st.lossSinceLog = 0;
          st.stepsSinceLog = 0;
        }
        this.hooks.onStep?.({ step: st.step, totalSteps: total, epoch: epochFloat, loss: empty ? 0 : loss, lr, samples: nExamples });
        st.epochSeconds = (Date.now() - epochStart) / 1000;
        if (hasEval && args.evalStrategy === "steps" && args.evalSteps > 0 && st.step % args.evalSteps === 0) {
          const e = runEval(epochFloat);
          log(`eval at step ${st.step}: ${Object.entries(e).filter(([k]) => k.startsWith("eval_")).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" | ")}`);
          if (earlyStopped) break;
        }
        if (saveBest && st.step < total) {
          saveBest = false;
          this.hooks.onSave?.(structuredClone(st), "best");
        }
        if (args.saveSteps > 0 && st.step % args.saveSteps === 0 && st.step < total) {
          this.hooks.onSave?.(structuredClone(st), "steps");
        }
        // Let signal handlers (SIGINT) run between steps; a stop comes after this step's evaluation, so that a resumed
        // run sees every evaluation (best model, early stopping, reduce_lr_on_plateau) an uninterrupted one does.
        await new Promise((r) => setImmediate(r));
        if (this.stopRequested && st.step < total) {
          this.hooks.onSave?.(structuredClone(st), "interrupt");
          interrupted = true;
          break;
        }
      }
      if (interrupted) break;

      const summary: EpochSummary = {
        epoch: st.epoch, loss: st.epochLoss / st.epochSteps, accuracy: st.correct / st.seen, seconds: (Date.now() - epochStart) / 1000,
      };
      const regression = model.config.problem_type === "regression";
      let line = `Epoch ${st.epoch} | Loss: ${summary.loss.toFixed(4)}` + (regression ? "" : ` | Accuracy: ${summary.accuracy.toFixed(4)}`);
      if (hasEval && args.evalStrategy === "epoch" && !earlyStopped) {
        const e = runEval(st.epoch);
        summary.eval = e;
        line += ` | Val Loss: ${e.eval_loss.toFixed(4)} | ` +
          (regression ? `Val MSE: ${e.eval_mse!.toFixed(4)}` : `Val Accuracy: ${(e.eval_accuracy ?? e.eval_subset_accuracy)!.toFixed(4)}`) +
          (model.head.reads === "tokens" ? ` | Val F1: ${e.eval_f1!.toFixed(4)}` : "") +
          (model.head.reads === "selected" ? ` | Val Perplexity: ${e.eval_perplexity!.toFixed(2)}` : "");
      }
      st.epochs.push(summary);
      if (this.hooks.onEpochEnd) this.hooks.onEpochEnd(summary, line);
      else log(line);
      // Next epoch: fresh accumulators; its order is drawn from the generator's current state.
      Object.assign(st, { stepInEpoch: 0, epochLoss: 0, epochSteps: 0, correct: 0, seen: 0, epochSeconds: 0, epochRngState: this.rng.state });
      if ((args.saveStrategy === "epoch" || saveBest) && st.step < total) this.hooks.onSave?.(structuredClone({ ...st, epoch: st.epoch + 1 }), saveBest ? "best" : "epoch");
      saveBest = false;
    }
    if (earlyStopped) log(`early stopping: ${bestKey} did not improve for ${args.earlyStoppingPatience} evaluation(s); best at step ${st.best!.step}`);
    let restored = false;
    if (!interrupted && args.loadBestModelAtEnd && bestWeights && st.best) {
      model.params.data.set(bestWeights);
      restored = true;
      log(`loaded the best model (step ${st.best.step}, ${bestKey} ${st.best.metric.toFixed(4)})`);
    }
    return {
      globalStep: st.step, epochs: st.epochs, logHistory: st.history, totalSteps: total,
      trainSeconds: (Date.now() - started) / 1000, interrupted, earlyStopped, samplesSeen, stepsRun,
      trainLoss: st.step - (st.skippedSteps ?? 0) > 0 ? (st.runLoss ?? 0) / (st.step - (st.skippedSteps ?? 0)) : NaN,
      best: st.best ? { metric: bestKey, value: st.best.metric, step: st.best.step, restored } : undefined,
      finalEval: !interrupted && !restored && lastEval?.step === st.step ? lastEval.result : undefined,
    };
  }
}

/** HF's trainer_state.json for a finished run. */
/** HF's trainer_state.json; `summary` (the end of a finished run) closes log_history as HF's does. */
export function trainerState(result: TrainResult, args: TrainingArgs, summary?: Record<string, number>, outputDir?: string): Record<string, unknown> {
  // HF's best_model_checkpoint: the best evaluation's checkpoint folder where one was saved, else null
  // (the best at the last step: no checkpoint there, the output folder itself holds those weights)
  const bestDir = !result.best || !outputDir ? null : result.best.step === result.globalStep && !result.interrupted ? outputDir : join(outputDir, `checkpoint-${result.best.step}`);
  const end = summary ? [{ ...summary, step: result.globalStep, total_flos: 0 }] : [];
  return {
    best_metric: result.best?.value ?? null,
    best_model_checkpoint: bestDir && existsSync(bestDir) ? bestDir : null,
    best_global_step: result.best?.step ?? null,
    epoch: result.epochs.length ? result.epochs[result.epochs.length - 1]!.epoch : 0,
    eval_steps: args.evalStrategy === "steps" ? args.evalSteps : null,
    global_step: result.globalStep,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: [...result.logHistory, ...end],
    logging_steps: args.loggingSteps,
    max_steps: result.totalSteps,
    num_train_epochs: args.epochs,
    save_steps: 0,
    train_batch_size: args.batchSize,
    trial_name: null,
    trial_params: null,
  };
}
