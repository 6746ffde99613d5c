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
import type { LoadedModel } from "./predict.js";

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

export function predictTokens(loaded: LoadedModel, inputs: { words: string[]; text?: string }[], opts: { maxLength: number; batchSize: number }): TokenPredictionRow[] {
  const { model, tokenizer, labels } = loaded;
  const C = model.head.outputs;
  // Every word's tag and score, window by window (no window ever cuts a word).
  const perWord = inputs.map((i) => ({ tags: i.words.map(() => "O"), scores: i.words.map(() => 0) }));
  const pieces = inputs.map((i) => i.words.map((w) => tokenizer.encodeWords([w]).inputIds.length - 2));
  const parts: { row: number; from: number; example: TokenExample }[] = [];
  inputs.forEach((inp, row) => {
    for (const [from, to] of windows(pieces[row]!, opts.maxLength - 2)) parts.push({ row, from, example: { words: inp.words.slice(from, to), tags: null, file: "", line: 0 } });
  });
  const { encoded } = encodeTokenExamples(tokenizer, parts.map((p) => p.example), null, opts.maxLength);
  for (const { rows, batch } of lengthSortedCollated(encoded, opts.batchSize, tokenizer.padId)) {
    const { logits } = model.forward(batch.input, { train: false });
    const T = batch.input.seqLen;
    rows.forEach((i, b) => {
      const { row, from } = parts[i]!;
      const wordIds = encoded[i]!.wordIds;
      wordIds.forEach((w, k) => {
        if (w === null || (k > 0 && wordIds[k - 1] === w)) return; // a word's tag is its first piece's
        const p = model.head.prediction(Array.from(logits.subarray((b * T + k) * C, (b * T + k) * C + C)), labels, { threshold: 0.5 }) as { tag: string; score: number };
        perWord[row]!.tags[from + w] = p.tag;
        perWord[row]!.scores[from + w] = p.score;
      });
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
    const found = entities(tags).filter((e) => e.type !== "_").map((e): EntityPrediction => {
      const start = offsets[e.start]!;
      const end = offsets[e.end]! + [...inp.words[e.end]!].length;
      const span = scores.slice(e.start, e.end + 1);
      return { entity_group: e.type, word: chars.slice(start, end).join(""), start, end, score: span.reduce((a, b) => a + b, 0) / span.length };
    });
    return { entities: found, tags };
  });
}

/** Evaluate a token-classification model on a labelled file: seqeval's entity scores, HF's eval_ names. */
export function evaluateTokenFile(loaded: LoadedModel, file: string, opts: { maxLength: number; batchSize: number }): Record<string, unknown> {
  const { model, tokenizer, labels } = loaded;
  const read = readTokenRows(file, true);
  if (read.examples.length === 0) throw new WeitiaoError(`${file}: no usable rows`);
  const { encoded } = encodeTokenExamples(tokenizer, read.examples, labels, opts.maxLength);
  const ev = evaluate(model, encoded, opts.batchSize, tokenizer.padId);
  return { rows: read.examples.length, eval_loss: ev.loss, ...prefixed("eval_", ev.metrics), per_type: ev.entities ?? {} };
}
