/**
 * Prediction and evaluation with a token-classification (NER) model: each text's characters are its words (as
 * Chinese NER data has them; pre-split words are taken as given), windows of whole words cover texts longer than
 * --max-length, and tokens' or words' tags are grouped into entities as HF's pipeline groups them.
 */
import { lengthSortedCollated } from "../data/dataset.js";
import { encodeTokenExamples, readTokenRows, wordWindows, type TokenExample } from "../data/tokens.js";
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
  /** Entity groups; with aggregation "none", tokens (TokenEntity). */
  entities: EntityPrediction[] | TokenEntity[];
  /** One tag per word (per character of a text); a word that yields no token (a space) gets O. */
  tags: string[];
  /** Each tag's probability (0 for a word without tokens). */
  tag_scores: number[];
}

export const AGGREGATIONS = ["simple", "none", "first", "max", "average"] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

/** HF's `aggregation_strategy="none"`: each token tagged other than O, with its tag (`word` is the token as the vocabulary spells it). */
export interface TokenEntity {
  entity: string;
  score: number;
  /** The token's position in the text's encoding ([CLS] is 0), counted as if the text were one window. */
  index: number;
  word: string;
  start: number;
  end: number;
}

const best = (p: number[]): { tag: number; score: number } => {
  let tag = 0;
  for (let c = 1; c < p.length; c++) if (p[c]! > p[tag]!) tag = c;
  return { tag, score: p[tag]! };
};

/**
 * A word's tag from its pieces' probabilities, as HF's pipeline aggregates words: first (the first piece's), max (the
 * piece with the highest score), average (the mean of the pieces' probabilities). With one piece per word (Chinese
 * characters) all three agree, and equal HF's token-level "simple" and "none".
 */
export function aggregate(probs: number[][], how: "first" | "max" | "average"): { tag: number; score: number } {
  if (how === "first") return best(probs[0]!);
  if (how === "max") return probs.map(best).reduce((a, b) => (b.score > a.score ? b : a));
  return best(probs[0]!.map((_, c) => probs.reduce((a, p) => a + p[c]!, 0) / probs.length));
}

interface Tagged {
  tag: string;
  score: number;
  start: number;
  end: number;
}

/** A tag's prefix and type as group_entities reads them ("B-PER" → B, PER; "O" → I, O). */
const parse = (t: string): [string, string] => (/^[BIES]-/.test(t) ? [t[0]!, t.slice(2)] : ["I", t]);

/**
 * HF's TokenClassificationPipeline.group_entities: consecutive items of one type join unless the later one is B-; O
 * items are grouped and then left out. HF reads only B- and I- prefixes; E- and S- (BIOES) are read here too, an E-
 * closing its entity and an S- standing alone, where HF would report "E-PER" as a type of its own.
 */
export function groupEntities(items: Tagged[]): Tagged[][] {
  const groups: Tagged[][] = [];
  let open: string | null = null;
  for (const it of items) {
    const [bi, type] = parse(it.tag);
    if (open === type && bi !== "B" && bi !== "S") groups.at(-1)!.push(it);
    else groups.push([it]);
    open = bi === "E" || bi === "S" ? null : type;
  }
  return groups.filter((g) => parse(g[0]!.tag)[1] !== "O");
}

/**
 * `maxLength`: as classification's (inputLength): the asked one, else the trained one, else 512, within the positions.
 * `aggregation`: HF's strategies. "simple" (the default) and "none" tag each token by its own argmax; "first", "max"
 * and "average" tag whole words. `tags` (one per word) come from the word-level strategy asked, else "first".
 */
export function predictTokens(loaded: LoadedModel, inputs: { words: string[]; text?: string }[], opts: { maxLength?: number; batchSize: number; aggregation?: Aggregation }): TokenPredictionRow[] {
  const { model, tokenizer, labels } = loaded;
  const how = opts.aggregation ?? "simple";
  const wordLevel = how === "first" || how === "max" || how === "average" ? how : "first";
  const maxLength = inputLength(loaded, opts.maxLength);
  const C = model.head.outputs;
  // Each word's pieces: their text and probabilities, window by window (no window ever cuts a word).
  const perWord = inputs.map((i) => i.words.map(() => [] as { piece: string; vocab: string; probs: number[] }[]));
  const pieces = inputs.map((i) => i.words.map((w) => tokenizer.encodeWords([w]).inputIds.length - 2));
  const parts: { row: number; from: number; example: TokenExample }[] = [];
  inputs.forEach((inp, row) => {
    for (const [from, to] of wordWindows(pieces[row]!, maxLength - 2)) parts.push({ row, from, example: { words: inp.words.slice(from, to), tags: null, file: "", line: 0 } });
  });
  const { encoded } = encodeTokenExamples(tokenizer, parts.map((p) => p.example), null, maxLength);
  for (const { rows, batch } of lengthSortedCollated(encoded, opts.batchSize, tokenizer.padId)) {
    const { logits } = model.forward(batch.input, { train: false });
    const T = batch.input.seqLen;
    rows.forEach((i, b) => {
      const { row, from } = parts[i]!;
      const enc = encoded[i]!;
      enc.wordIds.forEach((w, k) => {
        if (w === null) return;
        const p = model.head.prediction(Array.from(logits.subarray((b * T + k) * C, (b * T + k) * C + C)), labels, { threshold: 0.5 }) as TokenPrediction;
        perWord[row]![from + w]!.push({ piece: enc.tokens[k]!, vocab: tokenizer.idToToken(enc.inputIds[k]!) ?? enc.tokens[k]!, probs: p.probabilities });
      });
    });
  }
  return inputs.map((inp, row) => {
    // Character offsets of each word in the text (its code points), or words joined by spaces when given as words.
    const offsets: number[] = [];
    let at = 0;
    for (const w of inp.words) {
      offsets.push(at);
      at += [...w].length + (inp.text === undefined ? 1 : 0);
    }
    const chars = inp.text !== undefined ? [...inp.text] : [...inp.words.join(" ")];
    const words = perWord[row]!;
    const picks = words.map((ps) => (ps.length ? aggregate(ps.map((p) => p.probs), wordLevel) : null));
    const tags = picks.map((p) => (p ? labels[p.tag]! : "O"));
    const tag_scores = picks.map((p) => p?.score ?? 0);
    // What is grouped: words (word-level strategies) or tokens, only those that have tokens, as the pipeline reads
    // tokens: a space inside an entity ("叶 老桂") neither ends it nor is tagged.
    const items: (Tagged & { piece: string; index: number })[] = [];
    let index = 1;
    words.forEach((ps, w) => {
      if (ps.length === 0) return;
      const base = offsets[w]!;
      if (how === wordLevel) {
        const pick = picks[w]!;
        items.push({ tag: labels[pick.tag]!, score: pick.score, start: base, end: base + [...inp.words[w]!].length, piece: "", index });
        index += ps.length;
        return;
      }
      tokenizer.pieceSpans(inp.words[w]!, ps.map((p) => p.piece)).forEach(([s, e], k) => {
        const pick = best(ps[k]!.probs);
        items.push({ tag: labels[pick.tag]!, score: pick.score, start: base + s, end: base + e, piece: ps[k]!.vocab, index: index++ });
      });
    });
    if (how === "none") {
      const found = items.filter((t) => t.tag !== "O").map((t): TokenEntity => ({ entity: t.tag, score: t.score, index: t.index, word: t.piece, start: t.start, end: t.end }));
      return { entities: found, tags, tag_scores };
    }
    const found = groupEntities(items).map((g): EntityPrediction => {
      const start = g[0]!.start;
      const end = g.at(-1)!.end;
      return { entity_group: parse(g[0]!.tag)[1], word: chars.slice(start, end).join(""), start, end, score: g.reduce((a, t) => a + t.score, 0) / g.length };
    });
    return { entities: found, tags, tag_scores };
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
