/**
 * Token-classification (NER) data: rows of words with one tag each, read from the layouts people have, and aligned
 * to word pieces as HF's run_ner does.
 * - JSONL `{"tokens": [...], "ner_tags": [...]}` (HF datasets' conll2003 layout; tags as names, or ids with names);
 * - span JSONL as CLUENER: `{"text", "label": {type: {span_text: [[start, end], …]}}}`, end inclusive, offsets in
 *   code points; each character becomes a word, tagged B-/I- (spans overlapping one already tagged are skipped and
 *   counted);
 * - JSONL `{"text": …}` without tags (prediction), each character a word;
 * - CoNLL text (.txt, .conll, .bio): a token and its tag per line (the first and the last column), a blank line
 *   between sentences, `-DOCSTART-` skipped.
 */
import { extname } from "node:path";
import type { BertTokenizer } from "../tokenizer/index.js";
import { WeitiaoError } from "../util/errors.js";
import { readText } from "./read.js";
import type { EncodedExample } from "./dataset.js";

export interface TokenExample {
  words: string[];
  /** One tag per word (null for unlabelled prediction input). */
  tags: string[] | null;
  /** The row's text where it came as text (CLUENER, prediction): words are its code points. */
  text?: string;
  file: string;
  line: number;
}

/**
 * A text's words for tagging: each CJK character (and each other symbol or space) alone, as Chinese NER data tags
 * characters; runs of letters and digits (Latin, Cyrillic, …) stay one word, as a word-level model expects.
 */
export function textWords(text: string): string[] {
  const cjk = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
  const wordChar = /[\p{L}\p{N}\p{M}]/u;
  const words: string[] = [];
  let run = "";
  for (const ch of text) {
    if (wordChar.test(ch) && !cjk.test(ch)) {
      run += ch;
      continue;
    }
    if (run) words.push(run);
    run = "";
    words.push(ch);
  }
  if (run) words.push(run);
  return words;
}

export interface TokenRead {
  examples: TokenExample[];
  /** CLUENER spans left out because they overlap a span tagged before them in the row. */
  overlappingSpans: number;
}

const CONLL = [".txt", ".conll", ".bio", ".iob"];


/** Read every row of a token-classification file (a comma-separated list of files too); `requireTags` for training. */
export function readTokenRows(spec: string, requireTags: boolean): TokenRead {
  const out: TokenRead = { examples: [], overlappingSpans: 0 };
  for (const file of spec.split(",").map((f) => f.trim()).filter(Boolean)) {
    if ([".csv", ".tsv", ".tab"].includes(extname(file).toLowerCase())) {
      throw new WeitiaoError(`${file}: token-classification data is JSONL ({"tokens", "ner_tags"}, or CLUENER's {"text", "label"}) or CoNLL text (.txt, .conll, .bio), not CSV/TSV`);
    }
    const r = CONLL.includes(extname(file).toLowerCase()) ? readConll(file, requireTags) : readTokenJsonl(file, requireTags);
    out.examples.push(...r.examples);
    out.overlappingSpans += r.overlappingSpans;
  }
  if (out.examples.length === 0) throw new WeitiaoError(`${spec}: no rows`);
  return out;
}

/** CoNLL text; for prediction (requireTags false) a line may hold the token alone and tags are not read. */
function readConll(file: string, requireTags: boolean): TokenRead {
  const examples: TokenExample[] = [];
  let words: string[] = [];
  let tags: string[] = [];
  let start = 0;
  const flush = (): void => {
    if (words.length) examples.push({ words, tags: requireTags ? tags : null, file, line: start });
    words = [];
    tags = [];
  };
  readText(file).split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return flush();
    const cols = line.split(/\s+/);
    if (cols[0] === "-DOCSTART-") return flush();
    if (cols.length < 2 && requireTags) throw new WeitiaoError(`${file}:${i + 1}: expected a token and its tag, found "${line}"`);
    if (words.length === 0) start = i + 1;
    words.push(cols[0]!);
    tags.push(cols.at(-1)!);
  });
  flush();
  return { examples, overlappingSpans: 0 };
}

function readTokenJsonl(file: string, requireTags: boolean): TokenRead {
  const examples: TokenExample[] = [];
  let overlappingSpans = 0;
  readText(file).split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(raw) as Record<string, unknown>;
    } catch (e) {
      throw new WeitiaoError(`${where}: invalid JSON (${(e as Error).message})`);
    }
    if (row === null || typeof row !== "object" || Array.isArray(row)) throw new WeitiaoError(`${where}: each line must be a JSON object`);
    if ("tokens" in row) {
      const words = row.tokens;
      if (!Array.isArray(words) || !words.every((w) => typeof w === "string")) throw new WeitiaoError(`${where}: field "tokens" must be a list of strings`);
      const tags = row.ner_tags;
      if (tags === undefined) {
        if (requireTags) throw new WeitiaoError(`${where}: no field "ner_tags"`);
        examples.push({ words, tags: null, file, line: i + 1 });
        return;
      }
      if (!Array.isArray(tags) || !tags.every((t) => typeof t === "string" || (Number.isInteger(t) && (t as number) >= 0))) {
        throw new WeitiaoError(`${where}: field "ner_tags" must be a list of tag names (or non-negative tag ids)`);
      }
      if (tags.length !== words.length) throw new WeitiaoError(`${where}: ${words.length} tokens but ${tags.length} ner_tags`);
      examples.push({ words, tags: tags.map(String), file, line: i + 1 });
      return;
    }
    if (typeof row.text !== "string") throw new WeitiaoError(`${where}: expected "tokens" (with "ner_tags") or "text" (with a CLUENER "label")`);
    const chars = [...row.text];
    if (row.label === undefined) {
      if (requireTags) throw new WeitiaoError(`${where}: no field "label" (CLUENER spans) or "ner_tags"`);
      examples.push({ words: textWords(row.text), tags: null, text: row.text, file, line: i + 1 });
      return;
    }
    const r = spansToBio(chars, row.label, where);
    overlappingSpans += r.overlapping;
    examples.push({ words: chars, tags: r.tags, text: row.text, file, line: i + 1 });
  });
  return { examples, overlappingSpans };
}

/** CLUENER's `{type: {span_text: [[start, end_inclusive], …]}}` over code points → BIO tags, first span wins. */
export function spansToBio(chars: string[], label: unknown, where: string): { tags: string[]; overlapping: number } {
  if (label === null || typeof label !== "object" || Array.isArray(label)) throw new WeitiaoError(`${where}: field "label" must be {type: {span_text: [[start, end], …]}}`);
  const tags = chars.map(() => "O");
  let overlapping = 0;
  for (const [type, spans] of Object.entries(label as Record<string, unknown>)) {
    if (spans === null || typeof spans !== "object" || Array.isArray(spans)) throw new WeitiaoError(`${where}: label "${type}" must map span texts to [[start, end], …]`);
    for (const [spanText, places] of Object.entries(spans as Record<string, unknown>)) {
      if (!Array.isArray(places)) throw new WeitiaoError(`${where}: label "${type}" span "${spanText}" must be a list of [start, end]`);
      for (const p of places) {
        if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x))) {
          throw new WeitiaoError(`${where}: label "${type}" span "${spanText}": ${JSON.stringify(p)} is not [start, end]`);
        }
        const [start, end] = p as [number, number];
        if (start < 0 || end < start || end >= chars.length || chars.slice(start, end + 1).join("") !== spanText) {
          throw new WeitiaoError(`${where}: label "${type}" span "${spanText}" at [${start}, ${end}] does not match the text there ("${chars.slice(Math.max(0, start), end + 1).join("")}")`);
        }
        if (tags.slice(start, end + 1).some((t) => t !== "O")) {
          overlapping++;
          continue;
        }
        for (let k = start; k <= end; k++) tags[k] = `${k === start ? "B" : "I"}-${type}`;
      }
    }
  }
  return { tags, overlapping };
}

/**
 * The label list: the model's own (its id2label) when it covers every tag in the data, else the data's tags sorted as
 * run_ner sorts them. Tags given as ids need the model's names.
 */
export function resolveTagNames(examples: TokenExample[], modelLabels: string[] | null): string[] {
  const seen = new Set(examples.flatMap((e) => e.tags ?? []));
  if (modelLabels && [...seen].every((t) => modelLabels.includes(t))) return modelLabels;
  const numeric = [...seen].filter((t) => /^\d+$/.test(t));
  if (numeric.length) {
    // Ids mean nothing without the names they stand for: the model's (a token-classification folder's id2label).
    const where = examples.find((e) => e.tags?.some((t) => /^\d+$/.test(t)))!;
    if (!modelLabels) {
      throw new WeitiaoError(`${where.file}:${where.line}: ner_tags are ids (${numeric.slice(0, 3).join(", ")}…) but the model has no tag names (its config.json's id2label); write the tags as names`);
    }
    const bad = examples.find((e) => e.tags?.some((t) => /^\d+$/.test(t) && Number(t) >= modelLabels.length));
    if (bad) throw new WeitiaoError(`${bad.file}:${bad.line}: ner_tags id ${bad.tags!.find((t) => /^\d+$/.test(t) && Number(t) >= modelLabels.length)} is beyond the model's ${modelLabels.length} labels (${modelLabels.join(", ")})`);
    if (numeric.length === seen.size) return modelLabels;
  }
  return [...seen].sort();
}

/**
 * The tagging scheme of the data's tags, as reported: BIOES (IOBES) when E-/S- tags occur, IOB1 when an entity
 * starts with I- (B- then only separates two adjacent entities of one type), else BIO (IOB2). Entity scores read
 * all three alike (seqeval's default mode); tags without prefixes ("PER") are "unprefixed".
 */
export function tagScheme(examples: TokenExample[]): string {
  let iob1 = false;
  let bioes = false;
  let plain = false;
  for (const e of examples) {
    (e.tags ?? []).forEach((t, i) => {
      if (/^\d+$/.test(t) || t === "O") return;
      const m = /^([BIES])-(.+)$/.exec(t);
      if (!m) return void (plain = true);
      if (m[1] === "E" || m[1] === "S") bioes = true;
      const prev = i > 0 ? e.tags![i - 1]! : "O";
      if (m[1] === "I" && (!/^[BI]-/.test(prev) || prev.slice(2) !== m[2])) iob1 = true;
    });
  }
  if (plain) return "unprefixed";
  return bioes ? "BIOES" : iob1 ? "IOB1" : "BIO (IOB2)";
}

/** Tag ids of a row's words (ids stay ids when the data gives ids). */
function tagIds(e: TokenExample, names: string[]): number[] {
  const index = new Map(names.map((n, i) => [n, i]));
  return e.tags!.map((t, w) => {
    const id = index.get(t) ?? (/^\d+$/.test(t) && Number(t) < names.length ? Number(t) : undefined);
    if (id === undefined) throw new WeitiaoError(`${e.file}:${e.line}: tag "${t}" of word ${w + 1} is not one of the labels (${names.join(", ")})`);
    return id;
  });
}

export interface EncodedTokens {
  /** Each row's word index per token (null for special tokens) and its tokens' text as the tokenizer reports it. */
  encoded: (EncodedExample & { wordIds: (number | null)[]; tokens: string[] })[];
  /** The example each encoded row came from (a row split into windows gives several). */
  sources: number[];
  /** Rows cut at maxLength, and the labelled words they lost. */
  truncatedRows: number;
  truncatedWords: number;
  /** Rows split into windows (with a stride), and the windows they gave. */
  windowedRows: number;
  windows: number;
}

/**
 * Consecutive windows of whole words whose pieces fit `budget` tokens (a word longer than that stands alone and is
 * cut). With `stride` S each window after the first repeats the previous one's last whole words that fit in S
 * tokens, so every word is seen with context on both sides; without it, windows do not overlap.
 */
export function wordWindows(pieces: number[], budget: number, stride = 0): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  while (start < pieces.length) {
    let end = start;
    let used = 0;
    while (end < pieces.length && (end === start || used + pieces[end]! <= budget)) used += pieces[end++]!;
    out.push([start, end]);
    if (end === pieces.length) break;
    // Back up over whole words that fit in the stride, always moving forward by at least one word
    let next = end;
    let overlap = 0;
    while (next - 1 > start && overlap + pieces[next - 1]! <= stride) overlap += pieces[--next]!;
    start = next;
  }
  return out;
}

/**
 * Word pieces and aligned labels (run_ner's tokenize_and_align_labels): a word's first piece gets its tag, the
 * special tokens −100, its other pieces −100 (or, with labelAllTokens, its tag with B- made I-). A row longer than
 * maxLength is cut there, or with `stride` (training's --stride) split into windows of whole words that overlap by up
 * to `stride` tokens, each labelled in full.
 */
export function encodeTokenExamples(tokenizer: BertTokenizer, examples: TokenExample[], names: string[] | null, maxLength: number, labelAllTokens = false, stride?: number): EncodedTokens {
  const out: EncodedTokens = { encoded: [], sources: [], truncatedRows: 0, truncatedWords: 0, windowedRows: 0, windows: 0 };
  // run_ner's b_to_i_label: with --label-all-tokens a B- word's later pieces get its I- tag (when the labels have it)
  const inside = (names ?? []).map((n, i) => {
    const j = n.startsWith("B-") ? names!.indexOf(`I-${n.slice(2)}`) : -1;
    return j >= 0 ? j : i;
  });
  const encodeOne = (source: number, words: string[], ids: number[] | null): void => {
    const enc = tokenizer.encodeWords(words, { maxLength });
    const tokenLabels = enc.wordIds.map((w, k) => {
      if (w === null || !ids) return -100;
      if (k > 0 && enc.wordIds[k - 1] === w) return labelAllTokens ? inside[ids[w]!]! : -100;
      return ids[w]!;
    });
    if (enc.truncated) {
      out.truncatedRows++;
      const last = enc.wordIds.filter((w) => w !== null).at(-1) ?? -1;
      out.truncatedWords += words.length - 1 - last;
    }
    out.encoded.push({ inputIds: enc.inputIds, tokenTypeIds: enc.tokenTypeIds, label: -1, tokenLabels, wordIds: enc.wordIds, tokens: enc.tokens });
    out.sources.push(source);
  };
  examples.forEach((e, i) => {
    const ids = e.tags && names ? tagIds(e, names) : null;
    if (stride === undefined) return encodeOne(i, e.words, ids);
    const full = tokenizer.encodeWords(e.words);
    const specials = full.wordIds.filter((w) => w === null).length;
    if (full.inputIds.length <= maxLength) return encodeOne(i, e.words, ids);
    const pieces = e.words.map(() => 0);
    for (const w of full.wordIds) if (w !== null) pieces[w]!++;
    const spans = wordWindows(pieces, maxLength - specials, stride);
    out.windowedRows++;
    out.windows += spans.length;
    for (const [from, to] of spans) encodeOne(i, e.words.slice(from, to), ids ? ids.slice(from, to) : null);
  });
  return out;
}
