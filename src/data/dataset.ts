/**
 * From raw rows to labelled, tokenised examples and padded batches.
 */
import type { BertTokenizer, TruncationStrategy } from "../tokenizer/index.js";
import type { ModelInput } from "../model/task-model.js";
import type { BertConfig } from "../model/config.js";
import { hasGenericLabels, type ProblemType } from "../model/config.js";
import { WeitiaoError } from "../util/errors.js";
import type { RawRow } from "./read.js";
import { lengthSortedBatches } from "./split.js";

export interface ColumnOptions {
  textColumn: string;
  /** The pair column; JSONL rows default to "text_pair" (see extractExamples). */
  textPairColumn?: string;
  /** A row without the pair column (or with null there) is a single text, not an error (as every JSONL row is). */
  pairOptional?: boolean;
  /** Keep rows whose text is empty (prediction: one output per input row) instead of skipping them. */
  keepEmptyText?: boolean;
  labelColumn: string;
}

export interface TextExample {
  text: string;
  pair: string | null;
  /** Raw label as written in the file (null for unlabelled input). */
  rawLabel: string | null;
  file: string;
  line: number;
}

export interface SkippedRow {
  file: string;
  line: number;
  reason: string;
}

export interface ExtractResult {
  examples: TextExample[];
  skipped: SkippedRow[];
}

function columnError(row: RawRow, column: string, flag: string): WeitiaoError {
  return new WeitiaoError(
    `${row.file}:${row.line}: no column "${column}" (columns: ${Object.keys(row.fields).join(", ")}); choose one with ${flag}`,
  );
}

/** A text cell: a string, or null/absent (skipped as empty). JSONL numbers, objects or arrays are the file's error,
 *  not text to train on as "[object Object]". */
function asText(v: unknown, row: RawRow, column: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return v;
  throw new WeitiaoError(`${row.file}:${row.line}: field "${column}" is ${describeJson(v)}, not text`);
}

/** A label cell: a string, number or boolean as written; a JSONL array (multi-label) as its JSON. */
function asLabel(v: unknown, row: RawRow, column: string): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === "string" || typeof x === "number")) return JSON.stringify(v);
  throw new WeitiaoError(`${row.file}:${row.line}: field "${column}" is ${describeJson(v)}, not a label`);
}

function isJsonl(file: string): boolean {
  return /\.(jsonl|json|ndjson)$/i.test(file);
}

function describeJson(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  return `a ${typeof v} (${JSON.stringify(v)})`;
}

/**
 * Pull text, pair and label out of each row. Rows with empty text or an empty label are skipped and reported
 * (never silently dropped). `requireLabel` false for prediction input. In JSONL the pair is optional row by row: a
 * row's "text_pair" (or the --text-pair-column field) makes it a pair, a row without one is a single text.
 */
export function extractExamples(rows: RawRow[], cols: ColumnOptions, requireLabel: boolean): ExtractResult {
  const examples: TextExample[] = [];
  const skipped: SkippedRow[] = [];
  for (const row of rows) {
    const jsonl = isJsonl(row.file);
    const pairColumn = cols.textPairColumn ?? (jsonl ? "text_pair" : undefined);
    const pairOptional = cols.pairOptional || jsonl;
    if (!(cols.textColumn in row.fields)) throw columnError(row, cols.textColumn, "--text-column");
    if (pairColumn && !pairOptional && !(pairColumn in row.fields)) throw columnError(row, pairColumn, "--text-pair-column");
    if (requireLabel && !(cols.labelColumn in row.fields)) throw columnError(row, cols.labelColumn, "--label-column");
    const text = asText(row.fields[cols.textColumn], row, cols.textColumn);
    const pairCell = pairColumn ? asText(row.fields[pairColumn], row, pairColumn) : null;
    const pair = pairColumn ? pairCell ?? (pairOptional ? null : "") : null;
    const rawLabel = cols.labelColumn in row.fields ? asLabel(row.fields[cols.labelColumn], row, cols.labelColumn) : null;
    if ((text === null || text.trim() === "") && !cols.keepEmptyText) {
      skipped.push({ file: row.file, line: row.line, reason: "empty text" });
      continue;
    }
    if (requireLabel && (rawLabel === null || rawLabel.trim() === "")) {
      skipped.push({ file: row.file, line: row.line, reason: "missing label" });
      continue;
    }
    examples.push({ text: text ?? "", pair, rawLabel: rawLabel === null ? null : rawLabel.trim(), file: row.file, line: row.line });
  }
  return { examples, skipped };
}

/** Class names (index = class id), whether the file writes labels as integer ids, and the task. */
export interface LabelSet {
  names: string[];
  integer: boolean;
  problemType: ProblemType;
}

/** A multi-label cell: a JSON array (["体育","娱乐"]) or names separated by "|" (体育|娱乐). */
export function parseMultiLabel(raw: string): string[] {
  const t = raw.trim();
  if (t.startsWith("[")) {
    try {
      const v = JSON.parse(t) as unknown;
      if (Array.isArray(v)) return v.map((x) => String(x).trim()).filter(Boolean);
    } catch {
      /* fall through to the | form */
    }
  }
  return t.split("|").map((x) => x.trim()).filter(Boolean);
}

const isNumber = (l: string): boolean => l.trim() !== "" && Number.isFinite(Number(l));

/** The task a label column implies, unless the config or the user fixed it. */
export function detectProblemType(examples: TextExample[], config: BertConfig, forced?: ProblemType): ProblemType {
  if (forced) return forced;
  if (config.problem_type) return config.problem_type;
  const raw = examples.map((e) => e.rawLabel!);
  if (raw.some((l) => l.includes("|") || l.trim().startsWith("["))) return "multi_label_classification";
  if (raw.every(isNumber) && raw.some((l) => !/^-?\d+$/.test(l.trim()))) return "regression";
  return "single_label_classification";
}

const isIntLabel = (l: string): boolean => /^-?\d+$/.test(l);

/**
 * Decide the label set from the training labels and the model config:
 * - integers must be exactly 0…N−1 and are used as ids; names come from the config when its count matches,
 *   else LABEL_i;
 * - strings use the config's label2id when it covers every name (and is not the generic LABEL_i), else the
 *   sorted unique names.
 */
export function resolveLabels(examples: TextExample[], config: BertConfig, forced?: ProblemType): LabelSet {
  const raw = [...new Set(examples.map((e) => e.rawLabel!))];
  if (raw.length === 0) throw new WeitiaoError("no labelled rows to train on");
  const configNames = Object.entries(config.id2label).sort((a, b) => Number(a[0]) - Number(b[0])).map(([, n]) => n);
  const problemType = detectProblemType(examples, config, forced);
  if (problemType === "regression") {
    const bad = examples.find((e) => !isNumber(e.rawLabel!));
    if (bad) throw new WeitiaoError(`${bad.file}:${bad.line}: regression needs a number label, found "${bad.rawLabel}"`);
    return { names: ["LABEL_0"], integer: false, problemType };
  }
  if (problemType === "multi_label_classification") {
    const all = [...new Set(examples.flatMap((e) => parseMultiLabel(e.rawLabel!)))];
    const names = !hasGenericLabels(config) && all.every((l) => l in config.label2id)
      ? Object.entries(config.label2id).sort((a, b) => a[1] - b[1]).map(([n]) => n)
      : all.sort();
    return { names, integer: false, problemType };
  }
  const single = (set: Omit<LabelSet, "problemType">): LabelSet => {
    // One class makes a 1-output softmax: loss 0 and accuracy 1 from the first step, a model that learns nothing.
    if (set.names.length < 2) {
      throw new WeitiaoError(
        `${examples[0]!.file}: every row has the label "${raw[0]}": single-label classification needs at least two classes ` +
          "(add rows of the other classes, or use --problem-type regression for a numeric target)",
      );
    }
    return { ...set, problemType };
  };
  if (raw.every(isIntLabel)) {
    const ids = raw.map(Number).sort((a, b) => a - b);
    const n = ids[ids.length - 1]! + 1;
    if (ids[0]! < 0 || ids.length !== n) {
      const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !ids.includes(i));
      throw new WeitiaoError(
        `${examples[0]!.file}: integer labels must be 0…N−1, found {${ids.join(", ")}}` +
          (missing.length ? ` (missing ${missing.slice(0, 5).join(", ")})` : "") +
          "; renumber them, or write them as names (e.g. \"pos\"/\"neg\") to have them mapped automatically",
      );
    }
    return single({ names: configNames.length === n ? configNames : Array.from({ length: n }, (_, i) => `LABEL_${i}`), integer: true });
  }
  if (!hasGenericLabels(config) && raw.every((l) => l in config.label2id)) {
    return single({ names: Object.entries(config.label2id).sort((a, b) => a[1] - b[1]).map(([n]) => n), integer: false });
  }
  return single({ names: raw.sort(), integer: false });
}

/** The label set of a trained model, for evaluating a file whose labels may be ids or names. */
export function labelSetForFile(examples: TextExample[], names: string[], problemType: ProblemType): LabelSet {
  const raw = examples.map((e) => e.rawLabel!);
  return { names, integer: raw.every(isIntLabel) && !raw.every((l) => names.includes(l)), problemType };
}

/** What the loss needs per example: class ids (single-label; −1 otherwise) and float targets (multi-hot or value). */
export interface LabelTargets {
  ids: Int32Array;
  /** [rows × width]: multi-hot rows, or the regression value (width 1); null for single-label. */
  targets: Float32Array | null;
  width: number;
}

export function labelTargets(examples: TextExample[], set: LabelSet): LabelTargets {
  if (set.problemType === "single_label_classification") return { ids: labelIds(examples, set), targets: null, width: 0 };
  const ids = new Int32Array(examples.length).fill(-1);
  if (set.problemType === "regression") {
    return { ids, targets: Float32Array.from(examples, (e) => Number(e.rawLabel)), width: 1 };
  }
  const C = set.names.length;
  const index = new Map(set.names.map((n, i) => [n, i]));
  const targets = new Float32Array(examples.length * C);
  examples.forEach((e, r) => {
    for (const l of parseMultiLabel(e.rawLabel!)) {
      const c = index.get(l);
      if (c === undefined) throw new WeitiaoError(`${e.file}:${e.line}: unknown label "${l}" (known: ${set.names.join(", ")})`);
      targets[r * C + c] = 1;
    }
  });
  return { ids, targets, width: C };
}

/** Map each example's raw label to its class id; an unknown label is an error naming file:line. */
export function labelIds(examples: TextExample[], set: LabelSet): Int32Array {
  const index = new Map(set.names.map((n, i) => [n, i]));
  const ids = new Int32Array(examples.length);
  examples.forEach((e, i) => {
    const raw = e.rawLabel!;
    const id = set.integer ? (isIntLabel(raw) ? Number(raw) : undefined) : index.get(raw);
    if (id === undefined || id < 0 || id >= set.names.length) {
      const known = set.integer ? `0…${set.names.length - 1}` : set.names.join(", ");
      throw new WeitiaoError(`${e.file}:${e.line}: unknown label "${raw}" (known: ${known})`);
    }
    ids[i] = id;
  });
  return ids;
}

export interface EncodedExample {
  inputIds: number[];
  tokenTypeIds: number[];
  /** Optional explicit mask (defaults to all ones); lets raw pre-padded ids be trained as they are. */
  attentionMask?: number[];
  /** Class id for single-label classification, −1 otherwise. */
  label: number;
  /** Multi-hot row (multi-label) or [value] (regression). */
  target?: number[];
  /** Token tasks: a label per token, −100 where none (special tokens, a word's later sub-tokens). */
  tokenLabels?: number[];
}

export interface EncodeStats {
  truncated: number;
}

export function encodeExamples(
  tokenizer: BertTokenizer, examples: TextExample[], labels: Int32Array | LabelTargets | null, maxLength: number,
  truncation: TruncationStrategy = "longest_first",
): { encoded: EncodedExample[]; stats: EncodeStats } {
  let truncated = 0;
  const t: LabelTargets | null = labels instanceof Int32Array ? { ids: labels, targets: null, width: 0 } : labels;
  const encoded = examples.map((e, i): EncodedExample => {
    const enc = tokenizer.encode(e.text, e.pair, { maxLength, truncation });
    if (enc.truncated) truncated++;
    const out: EncodedExample = { inputIds: enc.inputIds, tokenTypeIds: enc.tokenTypeIds, label: t ? t.ids[i]! : -1 };
    if (t?.targets) out.target = Array.from(t.targets.subarray(i * t.width, (i + 1) * t.width));
    return out;
  });
  return { encoded, stats: { truncated } };
}

/**
 * Inference batches (evaluation, prediction, feature caching): the examples cut by lengthSortedBatches, each batch
 * collated. `rows` holds the batch's example indices, for writing results back in input order.
 */
export function* lengthSortedCollated(examples: EncodedExample[], batchSize: number, padId: number, select = false): Generator<{ rows: number[]; batch: ReturnType<typeof collate> }> {
  for (const rows of lengthSortedBatches(examples.map((e) => e.inputIds.length), batchSize)) {
    yield { rows, batch: collate(rows.map((i) => examples[i]!), padId, select) };
  }
}

/**
 * Pad a batch to its longest row (dynamic padding) into model input. `select` (a masked LM, Head.reads "selected"):
 * the labelled tokens become input.selected and the labels are theirs alone, in that order.
 */
export function collate(batch: EncodedExample[], padId: number, select = false): { input: ModelInput; labels: Int32Array; targets: Float32Array | null } {
  const B = batch.length;
  const T = Math.max(1, ...batch.map((e) => e.inputIds.length));
  const inputIds = new Int32Array(B * T).fill(padId);
  const tokenTypeIds = new Int32Array(B * T);
  const attentionMask = new Int32Array(B * T);
  const labels = new Int32Array(B);
  batch.forEach((e, b) => {
    inputIds.set(e.inputIds, b * T);
    tokenTypeIds.set(e.tokenTypeIds, b * T);
    if (e.attentionMask) attentionMask.set(e.attentionMask, b * T);
    else attentionMask.fill(1, b * T, b * T + e.inputIds.length);
    labels[b] = e.label;
  });
  const width = batch[0]?.target?.length ?? 0;
  const targets = width ? Float32Array.from(batch.flatMap((e) => e.target!)) : null;
  const input = { inputIds, attentionMask, tokenTypeIds, batch: B, seqLen: T };
  if (batch[0]?.tokenLabels) {
    // token tasks: labels in the padded layout of the ids, −100 at padding
    const tokenLabels = new Int32Array(B * T).fill(-100);
    batch.forEach((e, b) => tokenLabels.set(e.tokenLabels!, b * T));
    if (select) {
      const selected = Int32Array.from(tokenLabels.keys()).filter((p) => tokenLabels[p]! >= 0);
      return { input: { ...input, selected }, labels: selected.map((p) => tokenLabels[p]!), targets: null };
    }
    return { input, labels: tokenLabels, targets: null };
  }
  return { input, labels, targets };
}
