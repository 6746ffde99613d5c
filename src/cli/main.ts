/**
 * The weitiao command line. Thin: every command parses flags into the typed options of the library API
 * (src/api) and prints. User errors (WeitiaoError) print one line and exit 1.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { getBackend } from "../backend/index.js";
import { basename, dirname, join, resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import YAML from "yaml";
import { evaluateFile, predict, loadModel, type TextInput } from "../api/predict.js";
import { train, type TrainOptions } from "../api/train.js";
import { evaluateMaskedFile, type FillMaskCandidate, fillMask } from "../api/fill-mask.js";
import { HF_ARGUMENT_NAMES } from "../train/hf-arguments.js";
import { COMPUTE_OPTIONS, FLAG_ALIASES, type OptionSpec, READ_OPTIONS, TRAIN_OPTIONS } from "../train/options.js";
import { extractExamples } from "../data/dataset.js";
import { readRows, type ReadOptions } from "../data/read.js";
import { readTokenRows, textWords } from "../data/tokens.js";
import { AGGREGATIONS, type Aggregation, evaluateTokenFile, predictTokens } from "../api/predict-tokens.js";
import { checkOutputFile, csvCell, removeStaleTemps } from "../io/output.js";
import { DEMO_DATA_DIR, resolveModel } from "../io/resolve.js";
import { BertTokenizer } from "../tokenizer/index.js";
import { type BenchFamily, type BenchTask, runBench } from "../bench/bench.js";
import { WeitiaoError } from "../util/errors.js";
import { ProgressReporter } from "./progress.js";

/** Commander options from table specs (train/options.ts): the flag, its parser, choices, default and help. */
function addTableOptions(cmd: Command, specs: readonly OptionSpec[]): void {
  for (const s of specs) {
    const opt = new Option(s.arg ? `${s.flag} ${s.arg}` : s.flag, s.help);
    if (s.choices) opt.choices(s.choices);
    if (s.type === "int") opt.argParser(int(s.flag));
    if (s.type === "float") opt.argParser(float(s.flag));
    if (s.default !== undefined && s.type !== "bool") opt.default(s.default);
    if (s.required) opt.makeOptionMandatory();
    cmd.addOption(opt);
    if (s.negatable) cmd.addOption(new Option(s.flag.replace(/^--/, "--no-"), `${s.help.split(" (")[0]}: no`).hideHelp());
  }
}

/** The parsed values under the table's keys (`--no-header` arrives as header: false, the API's noHeader: true). */
function tableValues(cmd: Command, parsed: Record<string, unknown>, specs: readonly OptionSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const attr = cmd.options.find((opt) => opt.long === s.flag)!.attributeName();
    // Only what the user gave: the API applies the table's defaults itself (and so can tell a given --strategy from none)
    if (cmd.getOptionValueSource(attr) === "default") continue;
    out[s.key] = attr === s.key ? parsed[attr] : parsed[attr] === false;
  }
  return out;
}

/**
 * `--config FILE` (YAML or JSON, keys spelled like the flags: learning-rate, learning_rate or learningRate):
 * its settings become flags placed before the command line's own, so flags given on the command line win.
 */
export function expandConfig(argv: string[], program?: Command): string[] {
  const i = argv.findIndex((a) => a === "--config" || a.startsWith("--config="));
  if (i < 0) return argv;
  const file = argv[i]!.includes("=") ? argv[i]!.slice("--config=".length) : argv[i + 1];
  if (!file) throw new WeitiaoError("--config needs a file");
  const rest = [...argv.slice(0, i), ...argv.slice(argv[i]!.includes("=") ? i + 1 : i + 2)];
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new WeitiaoError(`${file}: config file not found`);
  }
  let cfg: unknown;
  try {
    cfg = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new WeitiaoError(`${file}: not valid ${file.endsWith(".json") ? "JSON" : "YAML"} (${(e as Error).message.split("\n")[0]})`);
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) throw new WeitiaoError(`${file}: must hold a mapping of option names to values`);
  const flags: string[] = [];
  // The command's own flags decide how a boolean is written (--x, or --no-x for options that default to on).
  const command = program?.commands.find((c) => c.name() === rest[0]);
  const known = new Set<string | undefined>(command?.options.map((opt) => opt.long) ?? []);
  const ignored: string[] = [];
  for (const [key, value] of Object.entries(cfg as Record<string, unknown>)) {
    if (key === "weitiao") continue; // training_args.json's writer version
    const spelled = "--" + key.replace(/([a-z0-9])([A-Z])/g, "$1-$2").replace(/_/g, "-").toLowerCase();
    const flag = FLAG_ALIASES[spelled] ?? spelled;
    const negated = flag.replace(/^--/, "--no-");
    if (command && !known.has(flag) && !known.has(negated)) {
      // HfArgumentParser's own spellings (--bf16, --fp16, --do_train, --report_to, …) go to normalizeArgv as written
      if (HF_SPECIAL.has(flag) || HF_NO_OPS.has(flag)) {
        if (value !== null && value !== undefined) flags.push(`${flag}=${Array.isArray(value) ? value.join(",") : String(value)}`);
        continue;
      }
      const snake = key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/-/g, "_").toLowerCase();
      if (HF_ARGUMENT_NAMES.has(snake)) {
        ignored.push(key);
        continue;
      }
      const near = nearestFlag(flag, [...known].filter((f): f is string => f !== undefined));
      throw new WeitiaoError(`${file}: unknown key "${key}": neither a weitiao ${rest[0]} option nor an HF TrainingArguments field${near ? ` (did you mean ${near.replace(/^--/, "")}?)` : ""}`);
    }
    if (value === true) {
      if (known.has(flag) || !known.has(negated)) flags.push(flag);
    } else if (value === false) {
      if (known.has(negated) || !known.has(flag)) flags.push(negated);
    } else if (Array.isArray(value)) flags.push(`${flag}=${value.map(String).join(",")}`); // report_to: [tensorboard]
    else if (value !== null && typeof value === "object") flags.push(`${flag}=${JSON.stringify(value)}`); // lr_scheduler_kwargs: {num_cycles: 2}
    else if (value !== null && value !== undefined) flags.push(`${flag}=${String(value)}`);
  }
  if (ignored.length) log(`notice: ${file}: HF arguments weitiao does not implement, ignored: ${ignored.join(", ")}`);
  // The command name stays first; config flags follow it; the command line's own flags come last and win.
  return [rest[0]!, ...flags, ...rest.slice(1)];
}

/** The table's booleans by their positive name (`--shuffle` for `--no-shuffle`), and whether they are on by default. */
const BOOLEAN_FLAGS = new Map(
  [...TRAIN_OPTIONS, ...COMPUTE_OPTIONS].filter((s: OptionSpec) => s.type === "bool").map((s: OptionSpec) => [s.flag.replace(/^--no-/, "--"), s.flag.startsWith("--no-")] as const),
);
/**
 * HF arguments that have nothing to do here (one process, no logging service; padding to --max-length changes no
 * result when padding rows are left out, see model/task-model.ts): accepted and dropped.
 */
const HF_NO_OPS = new Set(["--do-train", "--do-eval", "--pad-to-max-length"]);
const BOOL_VALUE = /^(true|false|1|0|yes|no)$/i;
/** Every flag the option tables declare (and their --no- forms), which an HF name never shadows. */
const TABLE_FLAGS = new Set([...TRAIN_OPTIONS, ...COMPUTE_OPTIONS, ...READ_OPTIONS].flatMap((s: OptionSpec) => [s.flag, s.flag.replace(/^--no-/, "--"), s.flag.replace(/^--/, "--no-")]));
const NEGATABLE = new Set([...TRAIN_OPTIONS, ...COMPUTE_OPTIONS].filter((s: OptionSpec) => s.negatable).map((s: OptionSpec) => s.flag));
/** HfArgumentParser spellings normalizeArgv rewrites (not flags of any command). */
const HF_SPECIAL = new Set(["--bf16", "--fp16", "--text-column-names", "--validation-split-percentage"]);

/**
 * HfArgumentParser's command lines as ours: `--output_dir=x` → `--output-dir=x`, aliases → canonical names,
 * `--flag True|False` (or `=`) for booleans, `--bf16` → `--precision bf16`, `--fp16` refused (no fp16 on CPU),
 * `--max_steps -1` → 0 (no cap), `--text_column_names a,b` → text and pair columns, and `--do_train`, `--do_eval`,
 * `--logging_dir D`, `--report_to none`, `--pad_to_max_length` accepted.
 */
export function normalizeArgv(argv: string[]): string[] {
  const out: string[] = [];
  const ignoredHf: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    // --task ner / mlm: the names the classic tutorial and run_mlm use for token-classification and fill-mask
    if ((arg === "ner" || arg === "mlm") && out.at(-1) === "--task") {
      out.push(arg === "ner" ? "token-classification" : "fill-mask");
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = FLAG_ALIASES[(eq >= 0 ? arg.slice(0, eq) : arg).replace(/_/g, "-")] ?? (eq >= 0 ? arg.slice(0, eq) : arg).replace(/_/g, "-");
    let value: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (name === "--task" && value === "ner") value = "token-classification";
    if (name === "--task" && value === "mlm") value = "fill-mask";
    const isBool = BOOLEAN_FLAGS.has(name) || ["--bf16", "--fp16", "--do-train", "--do-eval", "--pad-to-max-length"].includes(name);
    if (isBool && value === undefined && BOOL_VALUE.test(argv[i + 1] ?? "")) value = argv[++i];
    const on = value === undefined || /^(true|1|yes)$/i.test(value);
    if (name === "--fp16") {
      if (on) throw new WeitiaoError("--fp16: CPUs have no fp16 training here; use --bf16 (bf16 mixed precision) or leave fp32");
      continue;
    }
    if (name === "--bf16") {
      if (on) out.push("--precision", "bf16");
      continue;
    }
    // run_mlm.py's --validation_split_percentage P: --validation-split P/100
    if (name === "--validation-split-percentage") {
      const p = Number(value ?? argv[++i]);
      if (!(p > 0 && p < 100)) throw new WeitiaoError(`--validation_split_percentage must be a percentage between 0 and 100, got "${value ?? argv[i] ?? ""}"`);
      out.push("--validation-split", String(p / 100));
      continue;
    }
    // run_classification.py's --text_column_names a,b: the text and (where given) the pair column
    if (name === "--text-column-names") {
      const [text, pair, ...more] = (value ?? argv[++i] ?? "").split(",").map((c) => c.trim());
      if (!text || more.length) throw new WeitiaoError(`--text_column_names takes one or two column names ("sentence1,sentence2"), got "${value ?? argv[i] ?? ""}"`);
      out.push("--text-column", text, ...(pair ? ["--text-pair-column", pair] : []));
      continue;
    }
    if (HF_NO_OPS.has(name)) {
      // their value, when they take one, goes with them
      if (!isBool && value === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) i++;
      continue;
    }
    // A pasted HF argument weitiao has no use for (--metric_name, --shuffle_train_dataset, --push_to_hub): listed once
    // and dropped with its value, as --config drops it; our own flags are never in this list
    if (!TABLE_FLAGS.has(name) && HF_ARGUMENT_NAMES.has(name.slice(2).replace(/-/g, "_"))) {
      if (value === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) i++;
      ignoredHf.push(arg.split("=")[0]!);
      continue;
    }
    if (BOOLEAN_FLAGS.has(name)) {
      const defaultOn = BOOLEAN_FLAGS.get(name)!;
      // a negatable boolean's False is a request of its own (--greater_is_better False for a loss-like metric)
      if (on !== defaultOn || NEGATABLE.has(name)) out.push(on ? name : name.replace(/^--/, "--no-"));
      continue;
    }
    if (name === "--max-steps" && (value ?? argv[i + 1]) === "-1") {
      if (value === undefined) i++;
      out.push("--max-steps", "0");
      continue;
    }
    out.push(value !== undefined ? `${name}=${value}` : name);
  }
  if (ignoredHf.length) log(`notice: HF arguments weitiao does not implement, ignored: ${ignoredHf.join(", ")}`);
  return out;
}

function int(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${flag} needs an integer, got "${v}"`);
    return n;
  };
}

function float(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag} needs a number, got "${v}"`);
    return n;
  };
}

const log = (line: string): void => void process.stderr.write(line + "\n");
const out = (line: string): void => void process.stdout.write(line + "\n");

/** Options predict and evaluate share with train, from the same declarations. */
function addComputeOptions(cmd: Command): Command {
  addTableOptions(cmd, COMPUTE_OPTIONS);
  return cmd;
}

const addTruncationOption = (cmd: Command): Command => {
  addTableOptions(cmd, TRAIN_OPTIONS.filter((s) => s.key === "truncation"));
  return cmd;
};

function trainCommand(): Command {
  const cmd = new Command("train")
    .description("fine-tune a BERT-family encoder (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ERNIE, ALBERT) for text classification (CSV/TSV/JSONL), NER (--task ner: JSONL, CLUENER, CoNLL), or continue masked-LM pretraining on your own text (--task mlm: .txt or a text column)")
    .option("--config <file>", "YAML or JSON file with any of these options (keys like learning-rate or learning_rate); command-line flags win");
  addTableOptions(cmd, TRAIN_OPTIONS);
  addComputeOptions(cmd);
  cmd.addHelpText("after", `
Strategies:
  full     everything trains (default)
  head     only classifier.* trains (frozen encoder and pooler); the encoder's features are computed once
           in eval mode and cached, so epochs after the first cost almost nothing (--no-cache-features:
           PyTorch's semantics, dropout active inside the frozen encoder every step)
  top-k    classifier, pooler and the top K encoder layers (--top-k K)
  gradual  epoch 1 as head, epoch e as top-k with K = e−1, then the embeddings join

Example:
  weitiao train --model ./bert-base-chinese --train-file reviews.csv --validation-file dev.csv \\
    --output-dir out/ --epochs 3 --batch-size 16 --learning-rate 2e-5 --warmup-ratio 0.1

HF TrainingArguments spellings work too: --num_train_epochs, --per_device_train_batch_size, --output_dir, …`);
  cmd.action(async (o: Record<string, unknown>) => {
    const progress = new ProgressReporter(process.stderr, Number(o.loggingSteps) || 50);
    // Ctrl-C, or SIGTERM from a scheduler or `docker stop`: finish the current step, write a checkpoint, say how
    // to resume, exit 130 / 143 as a shell reports those signals. A second signal quits at once.
    const stop = new AbortController();
    let exitCode = 130;
    const onSignal = (signal: NodeJS.Signals): void => {
      const code = signal === "SIGTERM" ? 143 : 130;
      if (stop.signal.aborted) process.exit(code);
      exitCode = code;
      progress.line(`interrupt (${signal}): finishing the current step and writing a checkpoint (send it again to quit now)`);
      stop.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const opts: TrainOptions = {
      ...(tableValues(cmd, o, [...TRAIN_OPTIONS, ...COMPUTE_OPTIONS]) as TrainOptions),
      signal: stop.signal,
      log: (l) => progress.line(l),
      hooks: progress.hooks(),
      onDownloadProgress: (file, received, total) => progress.download(file, received, total),
    };
    const result = await train(opts).finally(() => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    });
    progress.done();
    if (result.interruptedAt) {
      log(`interrupted at step ${result.result.globalStep}: checkpoint written to ${result.interruptedAt}`);
      log(`resume with: weitiao train <same options> --resume-from-checkpoint ${result.interruptedAt}`);
      process.exitCode = exitCode;
      return;
    }
    if (result.eval) {
      const f1 = result.eval.metrics.f1 !== undefined && result.model.head.reads === "tokens" ? ` | eval_f1: ${result.eval.metrics.f1.toFixed(4)}` : "";
      const ppl = result.eval.metrics.perplexity !== undefined ? ` | perplexity: ${result.eval.metrics.perplexity.toFixed(2)}` : "";
      out(`eval_loss: ${result.eval.loss.toFixed(4)} | eval_accuracy: ${result.eval.accuracy.toFixed(4)}${f1}${ppl}`);
    }
  });
  return cmd;
}

/**
 * Inputs of predict and tokenize from a file. In JSONL, `text_pair` (or --text-pair-column) is optional row by
 * row: a row without it is a single text. In CSV/TSV a named pair column must be there.
 */
function readPredictInputs(file: string, textColumn: string, pairColumn: string | undefined, read: ReadOptions, idColumn?: string): (TextInput & { id?: string })[] {
  const rows = readRows(file, read);
  // --id-column: each row's id travels to its output line
  const ids = new Map<number, string>();
  if (idColumn) {
    for (const r of rows) {
      const v = r.fields[idColumn];
      if (v === undefined || v === null) throw new WeitiaoError(`${r.file}:${r.line}: no column "${idColumn}" (--id-column)`);
      ids.set(r.line, typeof v === "string" ? v : JSON.stringify(v));
    }
  }
  const { examples, skipped } = extractExamples(rows, { textColumn, textPairColumn: pairColumn, keepEmptyText: true, labelColumn: "\u0000" }, false);
  // Every row gets its output line, an empty text included ([CLS] [SEP] is a valid input, as in HF's pipeline).
  if (skipped.length) throw new WeitiaoError(`${skipped[0]!.file}:${skipped[0]!.line}: ${skipped[0]!.reason}`);
  const empty = examples.filter((e) => e.text.trim() === "");
  if (empty.length) log(`notice: ${empty.length} row(s) of ${file} have empty text (first: line ${empty[0]!.line}); each is encoded as the special tokens alone`);
  return examples.map((e) => ({ text: e.text, textPair: e.pair, ...(idColumn ? { id: ids.get(e.line)! } : {}) }));
}

/** predict --output's format from its extension: .jsonl (also .json, .ndjson), .csv or .tsv; stdout is JSONL. */
function outputFormat(file: string | undefined): "jsonl" | "csv" | "tsv" {
  if (file === undefined) return "jsonl";
  const m = /\.(jsonl|json|ndjson|csv|tsv)$/i.exec(file);
  if (!m) throw new WeitiaoError(`--output ${file}: write .jsonl, .csv or .tsv (the extension chooses the format)`);
  const ext = m[1]!.toLowerCase();
  return ext === "csv" ? "csv" : ext === "tsv" ? "tsv" : "jsonl";
}

/** A TSV cell: tabs and line breaks inside become spaces (TSV has no quoting, see data/read.ts). */
function tsvCell(s: string): string {
  return s.replace(/[\t\r\n]+/g, " ");
}


/** stdin for a token-classification model: JSONL rows ({"tokens": [...]} or {"text"}) or plain text, one per line. */
function readStdinTokenInputs(): { words: string[]; text?: string }[] {
  const lines = readFileSync(0, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  if (lines.length === 0) throw new WeitiaoError("stdin: no input lines");
  return lines.map((l, i) => {
    if (!l.trimStart().startsWith("{")) return { words: textWords(l), text: l };
    let o: { tokens?: unknown; text?: unknown };
    try {
      o = JSON.parse(l) as typeof o;
    } catch (e) {
      throw new WeitiaoError(`stdin:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    if (Array.isArray(o.tokens) && o.tokens.every((w) => typeof w === "string")) return { words: o.tokens as string[] };
    if (typeof o.text === "string") return { words: textWords(o.text), text: o.text };
    throw new WeitiaoError(`stdin:${i + 1}: expected "tokens" (a list of strings) or "text"`);
  });
}

/** stdin: JSONL rows ({"text", "text_pair"}) or plain text, one input per line. */
function readStdinInputs(): TextInput[] {
  const lines = readFileSync(0, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  if (lines.length === 0) throw new WeitiaoError("stdin: no input lines");
  return lines.map((l, i) => {
    if (!l.trimStart().startsWith("{")) return { text: l };
    try {
      const o = JSON.parse(l) as { text?: unknown; text_pair?: unknown };
      if (typeof o.text !== "string") throw new Error(o.text === undefined ? "no text field" : 'field "text" is not text');
      if (o.text_pair != null && typeof o.text_pair !== "string") throw new Error('field "text_pair" is not text');
      return { text: o.text, textPair: typeof o.text_pair === "string" ? o.text_pair : null };
    } catch (e) {
      throw new WeitiaoError(`stdin:${i + 1}: ${(e as Error).message}`);
    }
  });
}

function predictCommand(): Command {
  const cmd = new Command("predict")
    .description("predict labels with a fine-tuned model")
    .requiredOption("--model <dir>", "a fine-tuned model folder (e.g. the --output-dir of train; a LoRA adapter folder loads its base), or a weights file with --model-config")
    .option("--model-config <dir>", "with a bare weights file such as bert_finetuned.pth: folder with config.json and the tokenizer")
    .option("--adapter <dir>", "a PEFT LoRA adapter folder (ours or PEFT's) applied to the base --model")
    .option("--text <text...>", "text(s) to classify")
    .option("--input <file>", "a .jsonl (text, optional text_pair) or .csv/.tsv file; - reads JSONL or one text per line from stdin")
    .option("--text-column <name>", "text column of --input", "text")
    .option("--text-pair-column <name>", "pair column of --input (JSONL: text_pair)")
    .option("--id-column <name>", "a column of --input copied into each output line (CSV/TSV: the first column)")
    .option("--output <file>", "write predictions here instead of stdout: .jsonl, or .csv/.tsv (text, text_pair where given, label, score, prob_<label> per label)")
    .option("--top-labels <n>", "keep only the N most probable labels in probabilities", int("--top-labels"))
    .option("--max-length <n>", "truncate to N tokens (default: the length the model was trained with, else 512)", int("--max-length"))
    .option("--batch-size <n>", "inference batch size", int("--batch-size"), 32)
    .option("--threshold <p>", "multi-label models: report labels whose probability ≥ p", float("--threshold"), 0.5)
    .option("--output-tags", "token-classification models: also print each word's tag (tags) and its probability (tag_scores)")
    .addOption(new Option("--aggregation-strategy <s>", "token-classification models, as HF's pipeline: simple (tokens grouped into entities), none (each token), first|max|average (whole words)").choices(AGGREGATIONS).default("simple"));
  addTableOptions(cmd, READ_OPTIONS);
  addTruncationOption(cmd);
  addComputeOptions(cmd);
  cmd.addHelpText("after", `
Each output line: {"label", "score", "probabilities", "logits"}; multi-label models add "labels" (all
labels at or above --threshold); regression models give the value as "score" and "label": null.
Token-classification (NER) models: {"entities": [{"entity_group", "word", "start", "end", "score"}]} per row
(start/end: character offsets, end exclusive; "tags" and "tag_scores" too with --output-tags; with --aggregation-strategy
none each token as {"entity", "score", "index", "word", "start", "end"}); --input also takes JSONL
{"tokens": [...]} rows and CoNLL text.

Example:
  weitiao predict --model out/ --text "这部电影太好看了！" "烂片，浪费时间。"`);
  cmd.action(async (o: Record<string, unknown>) => {
    const texts = o.text as string[] | undefined;
    const inputFile = o.input as string | undefined;
    if (!texts && !inputFile) throw new WeitiaoError("predict needs --text T … or --input FILE");
    if (texts && inputFile) throw new WeitiaoError("predict takes --text or --input, not both");
    if (o.output) {
      checkOutputFile(o.output as string, "--output", inputFile);
      removeStaleTemps(dirname(resolve(o.output as string)), `${basename(o.output as string)}.tmp-`, log);
    }
    const format = outputFormat(o.output as string | undefined);
    const loaded = await loadModel(o.model as string, { modelConfig: o.modelConfig as string | undefined, adapter: o.adapter as string | undefined, backend: o.backend as "auto", precision: o.precision as "fp32", threads: o.threads as number | undefined, log });
    if (loaded.model.task === "fill-mask") {
      throw new WeitiaoError(`${o.model as string} is a masked-LM model (${loaded.model.config.architectures?.[0]}): fill its mask tokens with weitiao fill-mask, or fine-tune it for a task first (weitiao train --model ${o.model as string} …)`);
    }
    const csv = format !== "jsonl";
    const cell = (v: string): string => (format === "tsv" ? tsvCell(v) : csvCell(v));
    const sep = format === "tsv" ? "\t" : ",";
    let lines: string;
    let count: number;
    if (loaded.model.task === "token-classification") {
      // NER: a text's characters are its words; JSONL rows may give "tokens" instead of "text"
      const rows = texts
        ? texts.map((t) => ({ words: textWords(t), text: t }))
        : inputFile === "-"
          ? readStdinTokenInputs()
          : /\.(jsonl|json|ndjson|txt|conll|bio|iob)$/i.test(inputFile!)
            ? readTokenRows(inputFile!, false).examples.map((e) => ({ words: e.words, text: e.text }))
            : readPredictInputs(inputFile!, o.textColumn as string, undefined, tableValues(cmd, o, READ_OPTIONS)).map((t) => ({ words: textWords(t.text), text: t.text }));
      const preds = predictTokens(loaded, rows, { maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number, aggregation: o.aggregationStrategy as Aggregation });
      const shown = preds.map((p) => (o.outputTags ? p : { entities: p.entities }));
      lines = csv
        ? ["text", "entities", ...(o.outputTags ? ["tags", "tag_scores"] : [])].join(sep) + "\n" +
          preds.map((p, i) => [cell(rows[i]!.text ?? rows[i]!.words.join(" ")), cell(JSON.stringify(p.entities)), ...(o.outputTags ? [cell(JSON.stringify(p.tags)), cell(JSON.stringify(p.tag_scores))] : [])].join(sep)).join("\n") + "\n"
        : shown.map((p) => JSON.stringify(p)).join("\n") + "\n";
      count = preds.length;
    } else {
      if (o.outputTags) log("notice: --output-tags applies to token-classification models; this one classifies texts");
      const inputs: TextInput[] = texts
        ? texts.map((t) => ({ text: t }))
        : inputFile === "-"
          ? readStdinInputs()
          : readPredictInputs(inputFile!, o.textColumn as string, o.textPairColumn as string | undefined, tableValues(cmd, o, READ_OPTIONS), o.idColumn as string | undefined);
      if (o.idColumn && (texts || inputFile === "-")) throw new WeitiaoError("--id-column applies to --input FILE");
      const progress = new ProgressReporter(process.stderr, 1);
      const big = inputs.length > 1000;
      const preds = predict(loaded, inputs, {
        maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number, threshold: o.threshold as number,
        truncation: o.truncation as "longest_first", topLabels: o.topLabels as number | undefined,
        onProgress: big ? (done, total) => progress.count("predict", done, total) : undefined,
      });
      progress.done();
      // CSV/TSV: the input's text (and pair, where any row has one), the prediction, and every label's probability
      // in label order
      const pairs = inputs.some((t) => t.textPair != null);
      const probCols = preds[0] && Object.keys(preds[0].probabilities).length ? loaded.labels : [];
      lines = csv
        ? [...(o.idColumn ? [o.idColumn as string] : []), ...["text", ...(pairs ? ["text_pair"] : []), "label", "score"], ...probCols.map((l) => `prob_${l}`)].map(cell).join(sep) + "\n" +
          preds.map((p, i) => [...(o.idColumn ? [cell((inputs[i] as { id?: string }).id ?? "")] : []), cell(inputs[i]!.text), ...(pairs ? [cell(inputs[i]!.textPair ?? "")] : []), cell(p.labels ? p.labels.join("|") : p.label ?? ""), String(p.score),
            ...probCols.map((l) => (p.probabilities[l] === undefined ? "" : String(p.probabilities[l])))].join(sep)).join("\n") + "\n"
        : preds.map((p, i) => JSON.stringify(o.idColumn ? { [o.idColumn as string]: (inputs[i] as { id?: string }).id, ...p } : p)).join("\n") + "\n";
      count = preds.length;
    }
    if (o.output) writeOutput(o.output as string, lines, `${count} predictions`);
    else process.stdout.write(lines);
  });
  return cmd;
}

/** --output written whole or not at all: a temporary file renamed into place. */
function writeOutput(file: string, content: string, what: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content);
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
  log(`wrote ${what} to ${file}`);
}

function fillMaskCommand(): Command {
  const cmd = new Command("fill-mask")
    .description("fill the [MASK] tokens of texts with a masked-LM model (HF's FillMaskPipeline)")
    .requiredOption("--model <dir>", "a masked-LM folder (…ForMaskedLM: bert-base-chinese, or the --output-dir of train --task fill-mask)")
    .option("--text <text...>", "text(s) holding the mask token ([MASK], <mask>)")
    .option("--input <file>", "a .jsonl or .csv/.tsv file (its --text-column), a .txt file (one text per line), or - (stdin, one text per line)")
    .option("--text-column <name>", "text column of --input", "text")
    .option("--output <file>", "write the results here (.jsonl) instead of stdout")
    .option("--top-k <n>", "candidates per mask", int("--top-k"), 5)
    .option("--max-length <n>", "truncate to N tokens (default: the length the model was trained with, else 512)", int("--max-length"))
    .option("--batch-size <n>", "inference batch size", int("--batch-size"), 32);
  addTableOptions(cmd, READ_OPTIONS);
  addComputeOptions(cmd);
  cmd.addHelpText("after", `
Each output line is what HF's FillMaskPipeline returns for the text: for one mask a list of the top-k
{"score", "token", "token_str", "sequence"}, for several masks one such list per mask (in text order; their
"sequence" keeps the special tokens and the other masks, as HF's). A text without a mask token gets [] (and a notice).

Example:
  weitiao fill-mask --model out/ --text "今天天气很[MASK]。" --top-k 5`);
  cmd.action(async (o: Record<string, unknown>) => {
    const texts = o.text as string[] | undefined;
    const inputFile = o.input as string | undefined;
    if (!texts && !inputFile) throw new WeitiaoError("fill-mask needs --text T … or --input FILE");
    if (texts && inputFile) throw new WeitiaoError("fill-mask takes --text or --input, not both");
    if (o.output) {
      if (!/\.(jsonl|json|ndjson)$/i.test(o.output as string)) throw new WeitiaoError(`--output ${o.output as string}: fill-mask writes JSONL (.jsonl)`);
      checkOutputFile(o.output as string, "--output", inputFile);
    }
    const read = tableValues(cmd, o, READ_OPTIONS);
    const inputs = texts ?? (inputFile === "-"
      ? readFileSync(0, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "")
      : /\.txt$/i.test(inputFile!)
        ? readRows(inputFile!, { ...read, plainText: true }).map((r) => r.fields.text as string)
        : readPredictInputs(inputFile!, o.textColumn as string, undefined, read).map((t) => t.text));
    const loaded = await loadModel(o.model as string, { task: "fill-mask", backend: o.backend as "auto", precision: o.precision as "fp32", threads: o.threads as number | undefined, log });
    const results = fillMask(loaded, inputs, {
      topK: o.topK as number, maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number,
      onNoMask: (rows) => log(`notice: ${rows.length} text(s) hold no ${loaded.tokenizer.mask!.token} within --max-length (first: ${inputFile && inputFile !== "-" ? `line ${rows[0]! + 1}` : `text ${rows[0]! + 1}`}): each gets []`),
      onTruncatedMasks: (n, max) => log(`notice: ${n} ${loaded.tokenizer.mask!.token} token(s) lay past --max-length ${max} and were cut off with the text after them (raise --max-length)`),
    });
    const lines = results.map((r) => JSON.stringify(r)).join("\n") + "\n";
    if (o.output) writeOutput(o.output as string, lines, `${results.length} results`);
    else process.stdout.write(lines);
  });
  return cmd;
}

function evaluateCommand(): Command {
  const cmd = new Command("evaluate")
    .description("evaluate a fine-tuned model on a labelled file: loss and the task's metrics (JSON)")
    .requiredOption("--model <dir>", "a fine-tuned model folder (a LoRA adapter folder loads its base)")
    .option("--adapter <dir>", "a PEFT LoRA adapter folder (ours or PEFT's) applied to the base --model")
    .requiredOption("--input <file>", "labelled data: .csv, .tsv or .jsonl; NER models: JSONL (tokens/ner_tags, CLUENER) or CoNLL")
    .option("--text-column <name>", "column holding the text", "text")
    .option("--text-pair-column <name>", "column holding the second text of a pair")
    .option("--label-column <name>", "column holding the label", "label")
    .option("--max-length <n>", "truncate to N tokens (default: the length the model was trained with, else 512)", int("--max-length"))
    .option("--batch-size <n>", "batch size", int("--batch-size"), 64)
    .option("--threshold <p>", "multi-label decision threshold", float("--threshold"), 0.5)
    .option("--line-by-line", "masked-LM models: one example per line, as trained with --line-by-line (default: group_texts' blocks)")
    .option("--mlm-probability <p>", "masked-LM models: the share of tokens masked", float("--mlm-probability"), 0.15)
    .option("--whole-word-mask", "masked-LM models: mask whole Chinese words (jieba)")
    .option("--seed <n>", "masked-LM models: the seed the masks are drawn from (the same masks every run)", int("--seed"), 42);
  addTableOptions(cmd, READ_OPTIONS);
  addComputeOptions(cmd);
  cmd.addHelpText("after", `
A masked-LM folder (…ForMaskedLM) is scored on text (.txt lines, or a CSV/JSONL text column): eval_loss,
eval_accuracy over the masked tokens, perplexity.

Example:
  weitiao evaluate --model out/ --input test.csv`);
  cmd.action(async (o: Record<string, unknown>) => {
    const loaded = await loadModel(o.model as string, { adapter: o.adapter as string | undefined, backend: o.backend as "auto", precision: o.precision as "fp32", threads: o.threads as number | undefined, log });
    const result = loaded.model.task === "fill-mask"
      ? await evaluateMaskedFile(loaded, o.input as string, {
        textColumn: o.textColumn as string, maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number, lineByLine: o.lineByLine as boolean | undefined,
        mlmProbability: o.mlmProbability as number, wholeWordMask: o.wholeWordMask as boolean | undefined, seed: o.seed as number, read: tableValues(cmd, o, READ_OPTIONS),
      })
      : loaded.model.task === "token-classification"
      ? evaluateTokenFile(loaded, o.input as string, { maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number, log })
      : evaluateFile(loaded, o.input as string, {
      textColumn: o.textColumn as string, textPairColumn: o.textPairColumn as string | undefined, labelColumn: o.labelColumn as string,
      maxLength: o.maxLength as number | undefined, batchSize: o.batchSize as number, threshold: o.threshold as number,
      read: tableValues(cmd, o, READ_OPTIONS),
    });
    out(JSON.stringify(result, null, 2));
  });
  return cmd;
}

function tokenizeCommand(): Command {
  const cmd = new Command("tokenize")
    .description("show how a model's tokenizer encodes text (JSONL: tokens, input_ids, token_type_ids, attention_mask)")
    .requiredOption("--model <dir>", "model folder with tokenizer.json or vocab.txt")
    .option("--text <text>", "text to encode")
    .option("--text-pair <text>", "second text of a pair")
    .option("--input <file>", "encode every row of a .csv/.tsv/.jsonl file")
    .option("--text-column <name>", "text column of --input", "text")
    .option("--text-pair-column <name>", "pair column of --input")
    .option("--max-length <n>", "truncate to N tokens", int("--max-length"));
  addTableOptions(cmd, READ_OPTIONS);
  addTruncationOption(cmd);
  cmd
    .addHelpText("after", `
Example:
  weitiao tokenize --model demo --text "这部电影太好看了！"`)
    .action(async (o: Record<string, unknown>) => {
      const tk = BertTokenizer.fromDir(await resolveModel(o.model as string, undefined, { log }));
      let inputs: TextInput[];
      if (o.text !== undefined) inputs = [{ text: o.text as string, textPair: (o.textPair as string | undefined) ?? null }];
      else if (o.input) inputs = readPredictInputs(o.input as string, o.textColumn as string, o.textPairColumn as string | undefined, tableValues(cmd, o, READ_OPTIONS));
      else throw new WeitiaoError("tokenize needs --text T or --input FILE");
      for (const t of inputs) {
        const e = tk.encode(t.text, t.textPair ?? null, { maxLength: o.maxLength as number | undefined, truncation: o.truncation as "longest_first" });
        out(JSON.stringify({ tokens: e.tokens, input_ids: e.inputIds, token_type_ids: e.tokenTypeIds, attention_mask: e.attentionMask }));
      }
    });
  return cmd;
}

function demoCommand(): Command {
  const cmd = new Command("demo")
    .description("pretrain the bundled tiny Chinese model (masked LM) on the bundled reviews' text, fine-tune it and the random init on the labels, compare, predict (no network)")
    .option("--output-dir <dir>", "where the fine-tuned demo model is saved (the pretrained one beside it, in <dir>-mlm)", "weitiao-demo-output")
    .option("--epochs <n>", "fine-tuning epochs", int("--epochs"), 4)
    .option("--pretrain-epochs <n>", "masked-LM pretraining epochs (0: skip pretraining and the comparison)", int("--pretrain-epochs"), 20);
  addComputeOptions(cmd);
  cmd.addHelpText("after", `
The classic recipe in miniature: "pretraining builds the foundation, fine-tuning specialises". The bundled model
(random weights) first continues masked-LM pretraining on the reviews' text (their labels unused), then is
fine-tuned on the labels; the same fine-tuning from the random init runs beside it for comparison.

Example:
  weitiao demo --output-dir /tmp/demo && weitiao predict --model /tmp/demo --text "物流很快"`);
  cmd.action(async (o: Record<string, unknown>) => {
    const progress = new ProgressReporter(process.stderr, 10);
    const compute = { backend: o.backend as "auto", precision: (o.precision ?? "fp32") as "fp32", threads: o.threads as number | undefined };
    const outputDir = o.outputDir as string;
    const started = Date.now();
    const data = { trainFile: join(DEMO_DATA_DIR, "train.csv"), validationFile: join(DEMO_DATA_DIR, "validation.csv"), maxLength: 64, seed: 42 };
    const finetune = { ...data, epochs: o.epochs as number, batchSize: 16, learningRate: 1e-3, warmupRatio: 0.1, weightDecay: 0.01, loggingSteps: 10, ...compute };
    let base = "demo";
    let scratch: number[] | null = null;
    // The TypeScript fallback (no addon) projects onto the 21128-token vocabulary ~25× slower: pretraining only when asked
    let pretrainEpochs = o.pretrainEpochs as number;
    if (cmd.getOptionValueSource("pretrainEpochs") === "default" && getBackend({ backend: o.backend as "auto", precision: o.precision as "fp32" }).name === "typescript") {
      out("notice: the TypeScript backend skips the masked-LM pretraining step (minutes there; --pretrain-epochs 20 runs it)");
      pretrainEpochs = 0;
    }
    if (pretrainEpochs > 0) {
      // 1. domain-adaptive pretraining: run_mlm's recipe on the training texts alone
      out("weitiao demo: 1. masked-LM pretraining of the bundled tiny BERT (random weights, bert-base-chinese vocabulary) on the reviews' text");
      // (one review per example, as run_mlm's --line_by_line suits short texts)
      const mlm = await train({
        ...data, model: "demo", task: "fill-mask", lineByLine: true, outputDir: `${outputDir}-mlm`, epochs: pretrainEpochs, batchSize: 16,
        learningRate: 3e-3, warmupRatio: 0.1, weightDecay: 0.01, loggingSteps: 50, ...compute, log: (l) => progress.line(l), hooks: { ...progress.hooks(), onEpochEnd: () => {} },
      });
      progress.done();
      const first = mlm.result.epochs[0]!.eval!.eval_perplexity!;
      out(`pretrained: validation perplexity ${first.toFixed(0)} after epoch 1 → ${mlm.eval!.metrics.perplexity!.toFixed(0)} after epoch ${mlm.result.epochs.length} (of ${mlm.tokenizer.length} tokens)`);
      const filled = fillMask(await loadModel(mlm.outputDir, { task: "fill-mask", ...compute, log: () => {} }), ["物流很[MASK]，包装完好"], { topK: 3 })[0] as FillMaskCandidate[];
      out(`fill-mask: 物流很[MASK]，包装完好 → ${filled.map((c) => `${c.token_str} (${c.score.toFixed(3)})`).join(", ")}`);
      base = mlm.outputDir;
      // the baseline: the same fine-tuning from the random init, quietly, in a folder removed afterwards
      const tmp = mkdtempSync(join(tmpdir(), "weitiao-demo-"));
      try {
        const r = await train({ ...finetune, model: "demo", outputDir: join(tmp, "scratch") });
        scratch = r.result.epochs.map((e) => e.eval!.eval_accuracy!);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      out("weitiao demo: 2. fine-tuning the pretrained model on the labelled reviews");
    } else {
      out("weitiao demo: fine-tuning the bundled tiny BERT (random weights, bert-base-chinese vocabulary) on Chinese reviews");
    }
    const result = await train({ ...finetune, model: base, outputDir, log: (l) => progress.line(l), hooks: progress.hooks() });
    progress.done();
    out(`validation accuracy: ${result.eval!.accuracy.toFixed(4)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    if (scratch) {
      const ours = result.result.epochs.map((e) => e.eval!.eval_accuracy!);
      out(`validation accuracy per epoch: from the pretrained model ${ours.map((a) => a.toFixed(4)).join(" ")} | from the random init ${scratch.map((a) => a.toFixed(4)).join(" ")}`);
      const ahead = ours.flatMap((a, i) => (a > scratch![i]! ? [i + 1] : []));
      const behind = ours.flatMap((a, i) => (a < scratch![i]! ? [i + 1] : []));
      out(ahead.length && !behind.length
        ? `pretraining helped: the pretrained model is ahead after epoch ${ahead.join(", ")} (this sample is easy, so both end at ${ours.at(-1)!.toFixed(4)} and ${scratch.at(-1)!.toFixed(4)})`
        : behind.length && !ahead.length
          ? `pretraining did not help here: the random init is ahead after epoch ${behind.join(", ")}`
          : ahead.length ? `mixed: the pretrained model is ahead after epoch ${ahead.join(", ")}, behind after ${behind.join(", ")}` : "no difference on this easy sample");
    }
    const loaded = await loadModel(result.outputDir, { backend: o.backend as "auto", log: () => {} });
    const sentences = ["这家餐厅的菜非常好吃，服务也很周到", "质量太差了，用了一天就坏了，再也不买了", "物流很快，包装完好，很满意"];
    for (const [i, p] of predict(loaded, sentences.map((text) => ({ text }))).entries()) {
      out(`predict: ${sentences[i]} → ${p.label} (${p.score.toFixed(3)})`);
    }
    out(`report: ${join(result.outputDir, "report.html")} (open it in a browser)`);
    out(`model saved to ${result.outputDir}; try: weitiao predict --model ${outputDir} --text "还不错"` +
      (scratch ? `, or weitiao fill-mask --model ${outputDir}-mlm --text "服务很[MASK]"` : ""));
  });
  return cmd;
}

function benchCommand(): Command {
  return new Command("bench")
    .description("time a random BERT-base (batch 16, seq 128): train fp32/bf16, bf16 with a new length every step (dynamic padding) and with a batch padded to its longest row, head-only, inference; JSON lines")
    .option("--steps <n>", "timed steps per workload (median reported)", int("--steps"), 3)
    .option("--batch <n>", "training batch size", int("--batch"), 16)
    .option("--seq <n>", "sequence length", int("--seq"), 128)
    .option("--infer-batch <n>", "inference batch size", int("--infer-batch"), 64)
    .option("--layers <n>", "encoder layers", int("--layers"), 12)
    .option("--hidden <n>", "hidden size (heads = hidden/64)", int("--hidden"), 768)
    .addOption(new Option("--family <f>", "encoder shape: bert (BERT-base) or roberta (roberta-base: vocab 50265, no pooler, dense-tanh head)").choices(["bert", "roberta"]).default("bert"))
    .addOption(new Option("--task <t>", "the head: text-classification, or token-classification (NER: 9 tags on every token)").choices(["text-classification", "token-classification"]).default("text-classification"))
    .option("--threads <n>", "compute threads (default: all cores)", int("--threads"))
    .option("--only <names>", "comma-separated subset: train_fp32,train_bf16,train_bf16_varlen,train_bf16_padded,head_only,infer_fp32,infer_bf16")
    .option("--compare-torch", "also run scripts/bench_torch.py (PyTorch, same workload) and print our/torch ratios")
    .option("--rounds <n>", "with --compare-torch: alternate ours and PyTorch n times, then print each ratio's median (peak RSS: round 1 only)", int("--rounds"), 1)
    .addHelpText("after", `
Examples:
  weitiao bench --compare-torch                                  # the numbers in BENCHMARKS.md
  weitiao bench --only train_bf16 --compare-torch --rounds 5     # one ratio, median over 5 alternating rounds`)
    .action((o: Record<string, unknown>) => {
      runBench({
        steps: o.steps as number, batch: o.batch as number, seqLen: o.seq as number, inferBatch: o.inferBatch as number,
        layers: o.layers as number, hidden: o.hidden as number, threads: o.threads as number | undefined, family: o.family as BenchFamily, task: o.task as BenchTask,
        compareTorch: Boolean(o.compareTorch), rounds: o.rounds as number, only: o.only ? String(o.only).split(",") : undefined, out,
      });
    });
}

export function buildProgram(): Command {
  const program = new Command("weitiao")
    .description("微调 weitiao: fine-tune BERT-family models for text classification in Node.js — numbers equal to PyTorch + transformers")
    .version(JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")).version)
    .showSuggestionAfterError(true)
    .addHelpText("after", `
Examples:
  weitiao demo
  weitiao train --model ./bert-base-chinese --train-file train.csv --validation-file dev.csv --output-dir out/
  weitiao predict --model out/ --text "这部电影太好看了！"
  weitiao train --task fill-mask --model ./bert-base-chinese --train-file notes.txt --output-dir mlm/
  weitiao fill-mask --model mlm/ --text "今天天气很[MASK]。"
  weitiao tokenize --model out/ --text "这部电影太好看了！"`);
  for (const c of [trainCommand(), predictCommand(), fillMaskCommand(), evaluateCommand(), tokenizeCommand(), demoCommand(), benchCommand()]) {
    c.showSuggestionAfterError(true);
    program.addCommand(c);
  }
  return program;
}

/** The flag closest to `asked` by edit distance, when it is close (at most a third of its length, and 3). */
export function nearestFlag(asked: string, flags: string[]): string | null {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = d[0]!;
      d[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = d[j]!;
        d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return d[b.length]!;
  };
  let best: string | null = null;
  let bestD = Infinity;
  for (const f of new Set(flags)) {
    const x = dist(asked, f);
    if (x < bestD) [best, bestD] = [f, x];
  }
  return bestD <= Math.min(3, Math.ceil(asked.length / 3)) ? best : null;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  // commander's messages name flags as normalizeArgv rewrote them (--learning-rat); say them as they were typed
  const typed = new Map(argv.filter((a) => a.startsWith("--")).map((a) => {
    const name = a.split("=")[0]!;
    return [FLAG_ALIASES[name.replace(/_/g, "-")] ?? name.replace(/_/g, "-"), name] as const;
  }).filter(([n, t]) => n !== t));
  const writeErr = (str: string): void => {
    let out = str;
    for (const [n, t] of typed) out = out.replaceAll(`'${n}'`, `'${t}'`);
    // commander suggests among its own flags only; HF's spellings (aliases) are candidates too, shown in the user's style
    const unknown = /^error: unknown option '([^']+)'\n$/.exec(out);
    if (unknown) {
      const asked = unknown[1]!;
      const near = nearestFlag(asked.replace(/_/g, "-"), [...program.commands.flatMap((c) => c.options.map((o) => o.long!)), ...Object.keys(FLAG_ALIASES)]);
      if (near) out += `(Did you mean ${asked.includes("_") ? near.replace(/(?<=\w)-/g, "_") : near}?)\n`;
    }
    process.stderr.write(out);
  };
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({ writeErr });
  }
  try {
    await program.parseAsync(normalizeArgv(expandConfig(argv, program)), { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0; // a command may set it (130 on interrupt)
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith("commander.")) {
      // commander already printed its message (unknown option with a suggestion, missing value, --help, …)
      return err.exitCode ?? 1;
    }
    if (e instanceof WeitiaoError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    // The system refused (disk full, permission, a folder where a file goes): the user's to fix, in one line.
    if (typeof err.code === "string" && /^E[A-Z]+$/.test(err.code) && "syscall" in err) {
      const hint = err.code === "ENOSPC" ? " (the disk is full: free space, or write elsewhere)" : "";
      process.stderr.write(`error: ${err.message}${hint}\n`);
      return 1;
    }
    throw e;
  }
}
