/**
 * Every option of `weitiao train`, declared once: its API name, flag, type, default, help, HF TrainingArguments
 * spellings and validation. The CLI's flags and aliases, the API's TrainOptions type, config-file keys, the checks
 * and training_args.json are all derived from this table.
 */
import type { BackendName, Precision } from "../backend/index.js";
import type { ProblemType } from "../model/config.js";
import type { TruncationStrategy } from "../tokenizer/index.js";
import { STRATEGIES, type Strategy } from "./strategy.js";
import { WeitiaoError } from "../util/errors.js";
import { TASKS, type Task } from "../model/task.js";
import { QUOTINGS } from "../data/read.js";
import { LR_SCHEDULERS, type LrScheduler } from "./schedule.js";
import { OPTIMIZERS, type OptimizerName } from "./optimizers.js";
import { HF_ARGUMENT_NAMES } from "./hf-arguments.js";

export interface OptionSpec {
  /** The API's name (TrainOptions, training_args.json). */
  readonly key: string;
  /** The CLI flag; `--no-x` for a boolean that is on by default. */
  readonly flag: string;
  /** The CLI's placeholder for the value (none for booleans). */
  readonly arg?: string;
  readonly type: "int" | "float" | "string" | "bool";
  readonly choices?: readonly string[];
  readonly default?: string | number | boolean;
  readonly help: string;
  /** Other spellings users paste (HF TrainingArguments' names), without the leading `--`. */
  readonly aliases?: readonly string[];
  readonly required?: boolean;
  /** A valid value satisfies `ok`; the error reads "<flag> must be <rule>, got <value>". */
  readonly check?: { readonly ok: (v: number) => boolean; readonly rule: string };
  /** The trainer's own argument (TrainingArgs) rather than the run's data and model settings. */
  readonly training?: boolean;
  /** A boolean whose false differs from unset (HF's greater_is_better): `--no-x` is accepted too. */
  readonly negatable?: boolean;
}

const positive = { ok: (v: number) => Number.isInteger(v) && v > 0, rule: "a positive integer" };
const nonNegativeInt = { ok: (v: number) => Number.isInteger(v) && v >= 0, rule: "a non-negative integer" };
const nonNegative = { ok: (v: number) => Number.isFinite(v) && v >= 0, rule: "a non-negative number" };
const openUnit = { ok: (v: number) => v > 0 && v < 1, rule: "in (0, 1)" };
const halfOpenUnit = { ok: (v: number) => v >= 0 && v < 1, rule: "in [0, 1)" };

const PROBLEM_TYPES = ["single_label_classification", "multi_label_classification", "regression"] as const;
const TRUNCATIONS = ["longest_first", "only_first", "only_second"] as const;
const EVAL_STRATEGIES = ["no", "steps", "epoch"] as const;
const SAVE_STRATEGIES = ["no", "steps", "epoch", "best"] as const;

export const TRAIN_OPTIONS = [
  { key: "model", flag: "--model", arg: "<dir>", type: "string", required: true, aliases: ["model-name-or-path"], help: "HF model folder, hub id (org/name[@rev], into the HF cache; HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE), \"demo\", or a weights file with --model-config" },
  { key: "modelConfig", flag: "--model-config", arg: "<dir>", type: "string", help: "with a bare weights file (.pth/.bin/.safetensors): folder with config.json and the tokenizer" },
  { key: "task", flag: "--task", arg: "<task>", type: "string", choices: TASKS, help: "what to train: text-classification, token-classification (NER; alias ner) or fill-mask (masked-LM pretraining on your own text; alias mlm) (default: what the folder's architectures imply, else text-classification; question-answering is not supported yet)" },
  { key: "trainFile", flag: "--train-file", arg: "<file>", type: "string", required: true, help: "training data: .csv, .tsv or .jsonl (a folder of them, or a comma-separated list); token-classification: JSONL (tokens/ner_tags or CLUENER) or CoNLL files, comma-separated; fill-mask: .txt (one text per line), a folder of them, or a CSV/JSONL --text-column" },
  { key: "validationFile", flag: "--validation-file", arg: "<file>", type: "string", help: "validation data, evaluated after every epoch" },
  { key: "validationSplit", flag: "--validation-split", arg: "<r>", type: "float", check: openUnit, help: "hold out this fraction of the training rows for validation (stratified, seeded); nothing is split off unless asked" },
  { key: "testFile", flag: "--test-file", arg: "<file>", type: "string", help: "evaluated once after training (test_ metrics; rows without labels with --do-predict)" },
  { key: "doPredict", flag: "--do-predict", type: "bool", default: false, help: "also write --test-file's predictions to OUTPUT_DIR/predict_results.csv (index, prediction), as HF's example scripts; the test file may then be unlabelled" },
  { key: "outputDir", flag: "--output-dir", arg: "<dir>", type: "string", required: true, help: "where the fine-tuned model is saved (an earlier weitiao output there is replaced whole)" },
  { key: "overwriteOutputDir", flag: "--overwrite-output-dir", type: "bool", default: false, help: "write into a non-empty --output-dir that is not an earlier weitiao output (its checkpoint-N folders are removed)" },
  { key: "textColumn", flag: "--text-column", arg: "<name>", type: "string", default: "text", help: "column holding the text" },
  { key: "textPairColumn", flag: "--text-pair-column", arg: "<name>", type: "string", help: "column holding the second text of a pair" },
  { key: "labelColumn", flag: "--label-column", arg: "<name>", type: "string", default: "label", aliases: ["label-column-name"], help: "column holding the label" },
  { key: "noHeader", flag: "--no-header", type: "bool", help: "CSV/TSV has no header line: name columns by index (0, 1, …)" },
  { key: "quoting", flag: "--quoting", arg: "<q>", type: "string", choices: QUOTINGS, help: "csv: \"…\" fields as RFC 4180 (default for .csv); none: quotes are text (default for .tsv, which is not RFC 4180)" },
  { key: "stride", flag: "--stride", arg: "<n>", type: "int", check: nonNegativeInt, help: "token-classification training: split a row longer than --max-length into windows of whole words overlapping by up to N tokens (0: no overlap), each labelled in full; default: cut the row at --max-length as run_ner does" },
  { key: "labelAllTokens", flag: "--label-all-tokens", type: "bool", default: false, help: "token-classification: a word's later word pieces get its tag too (I- for a B- word), as run_ner's --label_all_tokens; default: only the first piece" },
  { key: "lineByLine", flag: "--line-by-line", type: "bool", default: false, help: "fill-mask: one example per non-empty line (cut at --max-length), as run_mlm's --line_by_line; default: run_mlm's group_texts (every text with its own [CLS]/[SEP], concatenated and cut into --max-length blocks)" },
  { key: "mlmProbability", flag: "--mlm-probability", arg: "<p>", type: "float", default: 0.15, check: openUnit, help: "fill-mask: the share of tokens masked (80% [MASK], 10% a random token, 10% unchanged), drawn afresh every step from --seed" },
  { key: "wholeWordMask", flag: "--whole-word-mask", type: "bool", default: false, help: "fill-mask: mask whole words together (Chinese words from the jieba segmenter, as run_mlm_wwm's reference ids; ## pieces join their word)" },
  { key: "maxLength", flag: "--max-length", arg: "<n>", type: "int", default: 128, check: positive, aliases: ["max-seq-length"], help: "truncate to N tokens (capped at what the model's max_position_embeddings allows)" },
  { key: "truncation", flag: "--truncation", arg: "<s>", type: "string", choices: TRUNCATIONS, default: "longest_first", help: "how text pairs are cut to --max-length" },
  { key: "batchSize", flag: "--batch-size", arg: "<n>", type: "int", default: 16, check: positive, training: true, aliases: ["per-device-train-batch-size"], help: "training batch size" },
  { key: "evalBatchSize", flag: "--eval-batch-size", arg: "<n>", type: "int", default: 64, check: positive, training: true, aliases: ["per-device-eval-batch-size"], help: "evaluation batch size" },
  { key: "learningRate", flag: "--learning-rate", arg: "<lr>", type: "float", default: 5e-5, check: nonNegative, training: true, aliases: ["lr"], help: "peak learning rate" },
  { key: "lrSchedulerType", flag: "--lr-scheduler-type", arg: "<s>", type: "string", choices: LR_SCHEDULERS, default: "linear", training: true, help: "learning-rate schedule after warmup, as HF's: linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt, cosine_with_min_lr, warmup_stable_decay, reduce_lr_on_plateau (lowered when evaluations stop improving)" },
  { key: "lrSchedulerKwargs", flag: "--lr-scheduler-kwargs", arg: "<json>", type: "string", training: true, help: "the schedule's own arguments as JSON, as HF's: num_cycles (cosine*), lr_end and power (polynomial), timescale (inverse_sqrt), min_lr or min_lr_rate (cosine_with_min_lr), num_decay_steps (required), num_stable_steps, warmup_type, decay_type, min_lr_ratio (warmup_stable_decay), mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps (reduce_lr_on_plateau)" },
  { key: "epochs", flag: "--epochs", arg: "<n>", type: "float", default: 3, check: { ok: (v: number) => Number.isFinite(v) && v > 0, rule: "a positive number" }, training: true, aliases: ["num-train-epochs"], help: "training epochs (fractional as HF: 2.5 stops half-way through the third)" },
  { key: "maxSteps", flag: "--max-steps", arg: "<n>", type: "int", default: 0, check: nonNegativeInt, training: true, help: "stop after N optimizer steps (overrides --epochs)" },
  { key: "warmupSteps", flag: "--warmup-steps", arg: "<n>", type: "float", check: { ok: (v: number) => v >= 0 && (v < 1 || Number.isInteger(v)), rule: "a whole number of steps, or a ratio below 1 (HF 5)" }, training: true, help: "linear warmup steps; a value below 1 is a ratio of all steps, as HF 5 reads it" },
  { key: "warmupRatio", flag: "--warmup-ratio", arg: "<r>", type: "float", check: halfOpenUnit, training: true, help: "warmup as a fraction of all steps" },
  { key: "optim", flag: "--optim", arg: "<name>", type: "string", choices: OPTIMIZERS, default: "adamw_torch", training: true, help: "the optimizer, as HF's: adamw_torch (adamw_torch_fused: the same), sgd, adagrad, rmsprop, adafactor (scale_parameter and relative_step off, as HF sets them)" },
  { key: "optimArgs", flag: "--optim-args", arg: "<k=v,…>", type: "string", training: true, help: "HF's optim_args: sgd momentum, dampening, nesterov; adagrad lr_decay, eps; rmsprop momentum, alpha, eps, centered" },
  { key: "adamBeta1", flag: "--adam-beta1", arg: "<b>", type: "float", default: 0.9, check: halfOpenUnit, training: true, help: "AdamW's β1" },
  { key: "adamBeta2", flag: "--adam-beta2", arg: "<b>", type: "float", default: 0.999, check: halfOpenUnit, training: true, help: "AdamW's β2" },
  { key: "adamEpsilon", flag: "--adam-epsilon", arg: "<e>", type: "float", default: 1e-8, check: { ok: (v: number) => v > 0 && Number.isFinite(v), rule: "a positive number" }, training: true, help: "AdamW's ε" },
  { key: "weightDecay", flag: "--weight-decay", arg: "<wd>", type: "float", default: 0, check: nonNegative, training: true, help: "AdamW weight decay (not applied to biases and LayerNorm)" },
  { key: "labelSmoothingFactor", flag: "--label-smoothing-factor", arg: "<e>", type: "float", default: 0, check: halfOpenUnit, training: true, help: "label smoothing as HF's LabelSmoother (single-label and token classification): targets (1−e)·onehot + e/C" },
  { key: "classWeights", flag: "--class-weights", arg: "<w>", type: "string", training: true, help: "single-label classification: weight the loss per class, \"balanced\" (sklearn's n/(C·count)) or w0,w1,… (torch's CrossEntropyLoss weight)" },
  { key: "maxGradNorm", flag: "--max-grad-norm", arg: "<n>", type: "float", default: 1, check: { ...nonNegative, rule: "a non-negative number (0 disables clipping)" }, training: true, help: "gradient clipping norm (0 disables)" },
  { key: "gradientAccumulationSteps", flag: "--gradient-accumulation-steps", arg: "<n>", type: "int", default: 1, check: positive, training: true, help: "micro-batches per optimizer step" },
  { key: "seed", flag: "--seed", arg: "<n>", type: "int", default: 42, training: true, help: "random seed (shuffling, dropout, new weights)" },
  { key: "dataSeed", flag: "--data-seed", arg: "<n>", type: "int", training: true, help: "seed of the data order alone (shuffling, length grouping), as HF's data_seed (default: --seed)" },
  { key: "dataloaderDropLast", flag: "--dataloader-drop-last", type: "bool", default: false, training: true, help: "drop each epoch's last batch when it is smaller than --batch-size" },
  { key: "shuffle", flag: "--no-shuffle", type: "bool", default: true, training: true, help: "keep file order: batch i is rows i·B … i·B+B−1" },
  { key: "groupByLength", flag: "--group-by-length", type: "bool", default: false, training: true, help: "batch rows of similar length together (less padding)" },
  { key: "problemType", flag: "--problem-type", arg: "<t>", type: "string", choices: PROBLEM_TYPES, help: "force the task (default: detected from the labels: ints/names → single-label, \"a|b\" or JSON lists → multi-label, decimals → regression)" },
  { key: "threshold", flag: "--threshold", arg: "<p>", type: "float", default: 0.5, check: openUnit, training: true, help: "multi-label: predict a label when its probability ≥ p" },
  { key: "evalStrategy", flag: "--eval-strategy", arg: "<s>", type: "string", choices: EVAL_STRATEGIES, default: "epoch", training: true, aliases: ["evaluation-strategy"], help: "evaluate the validation data after each epoch, every --eval-steps, or never" },
  { key: "evalSteps", flag: "--eval-steps", arg: "<n>", type: "int", check: nonNegativeInt, training: true, help: "with --eval-strategy steps: evaluate every N steps" },
  { key: "metricForBestModel", flag: "--metric-for-best-model", arg: "<m>", type: "string", training: true, help: "metric that picks the best model: accuracy (default), macro_f1, loss, …; micro_f1 (multi-label), mse (regression); token-classification: f1, precision, recall, accuracy, loss (default)" },
  { key: "greaterIsBetter", flag: "--greater-is-better", type: "bool", negatable: true, training: true, help: "with --metric-for-best-model: a larger value is better (default: true except for loss and mse)" },
  { key: "loadBestModelAtEnd", flag: "--load-best-model-at-end", type: "bool", default: false, training: true, help: "save the best evaluation's weights instead of the last ones" },
  { key: "earlyStoppingPatience", flag: "--early-stopping-patience", arg: "<n>", type: "int", check: nonNegativeInt, training: true, help: "stop after N evaluations without improvement" },
  { key: "dropout", flag: "--dropout", arg: "<p>", type: "float", check: halfOpenUnit, help: "override every dropout probability of the config (0: deterministic)" },
  { key: "strategy", flag: "--strategy", arg: "<s>", type: "string", choices: STRATEGIES, default: "full", training: true, help: "what trains" },
  { key: "adapter", flag: "--adapter", arg: "<dir>", type: "string", help: "a PEFT LoRA adapter folder (ours or PEFT's) to continue training on the base --model (implies --strategy lora; its adapter_config.json sets r, alpha, targets)" },
  { key: "loraR", flag: "--lora-r", arg: "<r>", type: "int", default: 8, check: positive, help: "with --strategy lora: the adapters' rank" },
  { key: "loraAlpha", flag: "--lora-alpha", arg: "<a>", type: "float", default: 8, check: { ok: (v: number) => v > 0, rule: "positive" }, help: "with --strategy lora: the scale is alpha/r (alpha/√r with --use-rslora)" },
  { key: "loraDropout", flag: "--lora-dropout", arg: "<p>", type: "float", default: 0, check: halfOpenUnit, help: "with --strategy lora: dropout on the adapters' input" },
  { key: "loraTargetModules", flag: "--lora-target-modules", arg: "<list>", type: "string", help: "with --strategy lora: comma-separated Linear module names as PEFT matches them (query,value), or all-linear (default: PEFT's for the family: query,value for BERT, RoBERTa, XLM-R, ELECTRA)" },
  { key: "useRslora", flag: "--use-rslora", type: "bool", default: false, help: "with --strategy lora: rank-stabilised scale alpha/√r" },
  { key: "modulesToSave", flag: "--modules-to-save", arg: "<list>", type: "string", help: "with --strategy lora: more modules trained whole beside the head PEFT's task type trains (e.g. pre_classifier for DistilBERT)" },
  { key: "mergeLora", flag: "--merge-lora", type: "bool", default: false, help: "with --strategy lora: also write the merged full model to OUTPUT_DIR/merged (merge_and_unload)" },
  { key: "topK", flag: "--top-k", arg: "<k>", type: "int", training: true, help: "with --strategy top-k: how many top encoder layers train" },
  { key: "layerLrDecay", flag: "--layer-lr-decay", arg: "<d>", type: "float", check: { ok: (v: number) => v > 0 && v <= 1, rule: "in (0, 1]" }, training: true, help: "layer-wise lr decay: layer L−1−j gets lr·d^(j+1), embeddings lr·d^(L+1)" },
  { key: "reportTo", flag: "--report-to", arg: "<list>", type: "string", help: "where logs also go, as HF's report_to: tensorboard (or all) writes TensorBoard event files into --logging-dir; none (default); other integrations (wandb, mlflow, …) are not available here and are ignored with a notice" },
  { key: "loggingDir", flag: "--logging-dir", arg: "<dir>", type: "string", help: "TensorBoard's folder with --report-to tensorboard (default: OUTPUT_DIR/runs)" },
  { key: "loggingStrategy", flag: "--logging-strategy", arg: "<s>", type: "string", choices: EVAL_STRATEGIES, default: "steps", training: true, help: "log loss/lr/grad_norm into trainer_state.json every --logging-steps, at each epoch's end, or never" },
  { key: "loggingFirstStep", flag: "--logging-first-step", type: "bool", default: false, training: true, help: "also log the first step" },
  { key: "evalOnStart", flag: "--eval-on-start", type: "bool", default: false, training: true, help: "evaluate once before the first step (a sanity check; not a best-model candidate)" },
  { key: "loggingSteps", flag: "--logging-steps", arg: "<n>", type: "int", default: 50, check: nonNegativeInt, training: true, help: "log loss/lr/grad_norm every N steps into trainer_state.json" },
  { key: "saveSteps", flag: "--save-steps", arg: "<n>", type: "int", default: 0, check: nonNegativeInt, training: true, help: "write checkpoint-N/ (model, optimizer, data position, RNG) every N steps" },
  { key: "saveStrategy", flag: "--save-strategy", arg: "<s>", type: "string", choices: SAVE_STRATEGIES, training: true, help: "checkpoint every --save-steps, after each epoch, or whenever an evaluation sets a new best --metric-for-best-model (default: steps when --save-steps is set, else no)" },
  { key: "saveOnlyModel", flag: "--save-only-model", type: "bool", default: false, training: true, help: "checkpoints hold the model without the optimizer state (smaller; training cannot resume from them, as in HF)" },
  { key: "saveTotalLimit", flag: "--save-total-limit", arg: "<n>", type: "int", default: 0, check: nonNegativeInt, help: "keep at most N checkpoints (oldest removed)" },
  { key: "resumeFromCheckpoint", flag: "--resume-from-checkpoint", arg: "<dir>", type: "string", help: "continue a run from checkpoint-N/ (or \"latest\" in --output-dir); ends with the same weights as an uninterrupted run" },
  { key: "cacheFeatures", flag: "--no-cache-features", type: "bool", default: true, training: true, help: "with --strategy head: run the frozen encoder in train mode every step (PyTorch tutorial semantics) instead of caching its features" },
] as const satisfies readonly OptionSpec[];

/** How data files are read: predict, evaluate and tokenize take them as train does. */
export const READ_OPTIONS: readonly OptionSpec[] = TRAIN_OPTIONS.filter((s) => s.key === "noHeader" || s.key === "quoting");

/** Options every compute command shares (train, predict, evaluate, tokenize's model loading). */
export const COMPUTE_OPTIONS = [
  { key: "backend", flag: "--backend", arg: "<name>", type: "string", choices: ["auto", "native", "typescript"], default: "auto", help: "compute backend" },
  { key: "precision", flag: "--precision", arg: "<p>", type: "string", choices: ["fp32", "bf16", "auto"], help: "fp32, bf16 mixed precision (native backend), or auto: bf16 where a short calibration shows this CPU runs it faster, else fp32 (train's default; predict and evaluate default to fp32)" },
  { key: "threads", flag: "--threads", arg: "<n>", type: "int", check: positive, help: "compute threads (default: all cores)" },
] as const satisfies readonly OptionSpec[];

type Spec = (typeof TRAIN_OPTIONS)[number] | (typeof COMPUTE_OPTIONS)[number];

/** The value type an option's spec implies (its choices, else its type). */
type ValueOf<S> = S extends { readonly choices: readonly (infer C)[] }
  ? C
  : S extends { readonly type: "int" | "float" }
    ? number
    : S extends { readonly type: "bool" }
      ? boolean
      : string;

/** The typed values the table declares (the CLI's flags as the API sees them). */
export type TableOptions = { -readonly [S in Spec as S["key"]]?: ValueOf<S> };

// The table's choices are spelled as the types the rest of the code uses: a mismatch fails here at compile time.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const typesAgree: [
  Same<TableOptions["strategy"], Strategy | undefined>, Same<TableOptions["task"], Task | undefined>,
  Same<TableOptions["problemType"], ProblemType | undefined>, Same<TableOptions["truncation"], TruncationStrategy | undefined>,
  Same<TableOptions["backend"], BackendName | undefined>, Same<TableOptions["precision"], Precision | undefined>,
  Same<TableOptions["lrSchedulerType"], LrScheduler | undefined>, Same<TableOptions["optim"], OptimizerName | undefined>,
] = [true, true, true, true, true, true, true, true];
void typesAgree;

/** Flag aliases: HF's spellings → our flags (`--num-train-epochs` → `--epochs`). Underscores are normalized first. */
export const FLAG_ALIASES: Record<string, string> = Object.fromEntries(
  [...TRAIN_OPTIONS, ...COMPUTE_OPTIONS].flatMap((s: OptionSpec) => (s.aliases ?? []).map((a) => [`--${a}`, s.flag])),
);

/** Each given value against its spec: the type, the choices, the range. */
export function checkTableOptions(o: Record<string, unknown>, specs: readonly OptionSpec[] = [...TRAIN_OPTIONS, ...COMPUTE_OPTIONS]): void {
  for (const s of specs) {
    const v = o[s.key];
    if (v === undefined) continue;
    const name = s.flag.replace(/^--no-/, "--");
    if (s.type === "int" || s.type === "float") {
      if (typeof v !== "number" || !Number.isFinite(v) || (s.type === "int" && !Number.isInteger(v))) {
        throw new WeitiaoError(`${name} must be ${s.type === "int" ? "an integer" : "a number"}, got ${String(v)}`);
      }
      if (s.check && !s.check.ok(v)) throw new WeitiaoError(`${name} must be ${s.check.rule}, got ${v}`);
    } else if (s.type === "bool") {
      if (typeof v !== "boolean") throw new WeitiaoError(`${name} must be true or false, got ${String(v)}`);
    } else if (typeof v !== "string" || (s.choices && !s.choices.includes(v))) {
      throw new WeitiaoError(`${name} must be ${s.choices ? `one of ${s.choices.join(", ")}` : "a string"}, got ${String(v)}`);
    }
  }
}

/** The table's defaults for the options `o` leaves out. */
export function withDefaults<T extends Record<string, unknown>>(o: T, specs: readonly OptionSpec[] = TRAIN_OPTIONS): T {
  const out: Record<string, unknown> = { ...o };
  for (const s of specs) if (out[s.key] === undefined && s.default !== undefined) out[s.key] = s.default;
  return out as T;
}

const snake = (key: string): string => key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();

/**
 * An option's name in training_args.json: HF's (its TrainingArguments field or example-script argument, such as
 * per_device_train_batch_size for batchSize), else ours in HF's snake_case.
 */
export function hfArgName(key: string): string {
  const spec = ([...TRAIN_OPTIONS, ...COMPUTE_OPTIONS] as readonly OptionSpec[]).find((s) => s.key === key);
  const alias = spec?.aliases?.map((a) => a.replace(/-/g, "_")).find((a) => HF_ARGUMENT_NAMES.has(a));
  return alias ?? snake(key);
}

/** A resolved run's options under their training_args.json names (hfArgName); `--config` reads them back. */
export function hfNamedArgs(resolved: Record<string, unknown>, version: string): Record<string, unknown> {
  // "weitiao": which version wrote it (and that weitiao did: an output folder it may replace whole)
  return { weitiao: version, ...Object.fromEntries(Object.entries(resolved).map(([k, v]) => [hfArgName(k), v])) };
}

/** The keys of the trainer's own arguments (TrainingArgs). */
export const TRAINING_KEYS: readonly string[] = TRAIN_OPTIONS.filter((s: OptionSpec) => s.training).map((s) => s.key);
