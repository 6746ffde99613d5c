/**
 * Prediction and evaluation with a token-classification (NER) model: each text's characters are its words (as
 * Chinese NER data has them; pre-split words are taken as given), windows of whole words cover texts longer than
 * --max-length, and the words' tags are grouped into entities as HF's pipeline does with aggregation "simple".
 */
import { lengthSortedCollated } from "../data/dataset.js";
import { encodeTokenExamples, readTokenRows, type TokenExample } from "../data/tokens.js";
import { entities } from "../train/seqeval.js";
import { evaluate, prefixed } from "../train/trainer.js";
import { WeitiaoError } from "../util/errors.js";
import { inputLength, type LoadedModel } from "./predict.js";
import type { TokenPrediction } from "../model/heads/token-classification.js";

/** One entity: its type, the text it spans (`word` = text[start:end], code points, end exclusive) and its mean score. */
export interface EntityPrediction {
  entity_group: string;
  word: string;
  start: number;
  end: number;
  score: number;
}

export interface TokenPredictionRow {
  entities: EntityPrediction[];
  /** One tag per word (per character of a text); a word that yields no token (a space) gets O. */
  tags: string[];
}

/** Split words into consecutive windows whose word pieces fit `budget` tokens (a word longer than that stands alone). */
function windows(pieces: number[], budget: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let used = 0;
  pieces.forEach((n, w) => {
    if (used + n > budget && w > start) {
      out.push([start, w]);
      start = w;
      used = 0;
    }
    used += n;
  });
  out.push([start, pieces.length]);
  return out;
}

export const AGGREGATIONS = ["first", "max", "average"] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

/**
 * A word's tag from its pieces' probabilities, as HF's pipeline aggregates words: first (the first piece's), max (the
 * piece with the highest score), average (the mean of the pieces' probabilities). With one piece per word (Chinese
 * characters) all three agree, and equal HF's "simple".
 */
export function aggregate(probs: number[][], how: Aggregation): { tag: number; score: number } {
  const best = (p: number[]): { tag: number; score: number } => {
    let tag = 0;
    for (let c = 1; c < p.length; c++) if (p[c]! > p[tag]!) tag = c;
    return { tag, score: p[tag]! };
  };
  if (how === "first") return best(probs[0]!);
  if (how === "max") return probs.map(best).reduce((a, b) => (b.score > a.score ? b : a));
  return best(probs[0]!.map((_, c) => probs.reduce((a, p) => a + p[c]!, 0) / probs.length));
}

/** `maxLength`: as classification's (inputLength): the asked one, else the trained one, else 512, within the positions. */
export function predictTokens(loaded: LoadedModel, inputs: { words: string[]; text?: string }[], opts: { maxLength?: number; batchSize: number; aggregation?: Aggregation }): TokenPredictionRow[] {
  const { model, tokenizer, labels } = loaded;
  const maxLength = inputLength(loaded, opts.maxLength);
  const C = model.head.outputs;
  // Every word's tag and score, window by window (no window ever cuts a word).
  const perWord = inputs.map((i) => ({ tags: i.words.map(() => "O"), scores: i.words.map(() => 0) }));
  const pieces = inputs.map((i) => i.words.map((w) => tokenizer.encodeWords([w]).inputIds.length - 2));
  const parts: { row: number; from: number; example: TokenExample }[] = [];
  inputs.forEach((inp, row) => {
    for (const [from, to] of windows(pieces[row]!, maxLength - 2)) parts.push({ row, from, example: { words: inp.words.slice(from, to), tags: null, file: "", line: 0 } });
  });
  const { encoded } = encodeTokenExamples(tokenizer, parts.map((p) => p.example), null, maxLength);
  for (const { rows, batch } of lengthSortedCollated(encoded, opts.batchSize, tokenizer.padId)) {
    const { logits } = model.forward(batch.input, { train: false });
    const T = batch.input.seqLen;
    rows.forEach((i, b) => {
      const { row, from } = parts[i]!;
      const wordIds = encoded[i]!.wordIds;
      // Each word's pieces' probabilities, then one tag per word by the aggregation strategy (HF's word-level ones)
      const byWord = new Map<number, number[][]>();
      wordIds.forEach((w, k) => {
        if (w === null) return;
        const p = model.head.prediction(Array.from(logits.subarray((b * T + k) * C, (b * T + k) * C + C)), labels, { threshold: 0.5 }) as TokenPrediction;
        byWord.set(w, [...(byWord.get(w) ?? []), p.probabilities]);
      });
      for (const [w, probs] of byWord) {
        const pick = aggregate(probs, opts.aggregation ?? "first");
        perWord[row]!.tags[from + w] = labels[pick.tag]!;
        perWord[row]!.scores[from + w] = pick.score;
      }
    });
  }
  return inputs.map((inp, row) => {
    const { tags, scores } = perWord[row]!;
    // Character offsets of each word in the text (its code points), or words joined by spaces when given as words.
    const offsets: number[] = [];
    let at = 0;
    for (const w of inp.words) {
      offsets.push(at);
      at += [...w].length + (inp.text === undefined ? 1 : 0);
    }
    const chars = inp.text !== undefined ? [...inp.text] : [...inp.words.join(" ")];
    // Entities are read from the words that have tokens, as the pipeline reads tokens: a space inside an entity
    // ("叶 老桂") neither ends it nor is tagged.
    const kept = inp.words.flatMap((_, w) => (pieces[row]![w]! > 0 ? [w] : []));
    const found = entities(kept.map((w) => tags[w]!)).filter((e) => e.type !== "_").map((e): EntityPrediction => {
      const first = kept[e.start]!;
      const last = kept[e.end]!;
      const start = offsets[first]!;
      const end = offsets[last]! + [...inp.words[last]!].length;
      const span = kept.slice(e.start, e.end + 1).map((w) => scores[w]!);
      return { entity_group: e.type, word: chars.slice(start, end).join(""), start, end, score: span.reduce((a, b) => a + b, 0) / span.length };
    });
    return { entities: found, tags };
  });
}


/** Evaluate a token-classification model on a labelled file: seqeval's entity scores, HF's eval_ names. */
export function evaluateTokenFile(loaded: LoadedModel, file: string, opts: { maxLength?: number; batchSize: number; log?: (line: string) => void }): Record<string, unknown> {
  const { model, tokenizer, labels } = loaded;
  const read = readTokenRows(file, true);
  if (read.examples.length === 0) throw new WeitiaoError(`${file}: no usable rows`);
  const maxLength = inputLength(loaded, opts.maxLength);
  const enc = encodeTokenExamples(tokenizer, read.examples, labels, maxLength);
  // What the scores leave out is said, as training says it
  if (enc.truncatedRows) opts.log?.(`notice: ${enc.truncatedRows} row(s) longer than --max-length ${maxLength} were cut, ${enc.truncatedWords} word(s) left out of the scores`);
  if (read.overlappingSpans) opts.log?.(`notice: ${read.overlappingSpans} CLUENER span(s) overlapping an earlier span were left out`);
  const ev = evaluate(model, enc.encoded, opts.batchSize, tokenizer.padId);
  return {
    rows: read.examples.length, truncated_rows: enc.truncatedRows, truncated_words: enc.truncatedWords, overlapping_spans_skipped: read.overlappingSpans,
    eval_loss: ev.loss, ...prefixed("eval_", ev.metrics), per_type: ev.entities ?? {},
  };
}
