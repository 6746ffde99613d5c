/**
 * Masked-LM data as HF's run_mlm.py and its collators make it: texts tokenized with their own special tokens, then
 * either one example per line (--line-by-line) or group_texts' blocks; masks drawn per batch as
 * DataCollatorForLanguageModeling draws them (or DataCollatorForWholeWordMask with Chinese reference ids).
 */
import type { BertTokenizer } from "../tokenizer/index.js";
import { Rng } from "../util/rng.js";
import type { EncodedExample } from "./dataset.js";

/** What masking needs from the tokenizer and the run's options. */
export interface MaskingSpec {
  maskId: number;
  /** Ids never chosen ([CLS], [SEP], [PAD], …: the tokenizer's special tokens, as get_special_tokens_mask sees them). */
  specialIds: ReadonlySet<number>;
  /** Random replacements are drawn from [0, vocabLength): len(tokenizer), the distinct tokens (HF), not vocab_size. */
  vocabLength: number;
  /** --mlm-probability (0.15). */
  probability: number;
  /** --whole-word-mask: choose whole words (EncodedExample.wordStarts) as DataCollatorForWholeWordMask does. */
  wholeWord: boolean;
}

/** A masked-LM example before masking: its ids, and where a whole-word mask may start a word. */
export interface MlmExample extends EncodedExample {
  /** Per token, 1 where a word starts (a token that joins the previous one is 0); whole-word masking only. */
  wordStarts?: number[];
}

/**
 * DataCollatorForLanguageModeling: each non-special token is chosen with `probability`; of the chosen, 80% become
 * the mask token, half of the rest a random token, the others stay. Labels: the original id where chosen, −100
 * elsewhere. With `wholeWord`, DataCollatorForWholeWordMask's choice instead (see chooseWholeWords).
 */
export function maskExample(e: MlmExample, spec: MaskingSpec, rng: Rng): EncodedExample {
  const ids = e.inputIds;
  const real = (i: number): boolean => !spec.specialIds.has(ids[i]!) && (e.attentionMask?.[i] ?? 1) === 1;
  const chosen = spec.wholeWord ? chooseWholeWords(e, real, spec.probability, rng) : ids.map((_, i) => real(i) && rng.next() < spec.probability);
  const inputIds = ids.slice();
  const tokenLabels = ids.map((id, i) => (chosen[i] ? id : -100));
  for (let i = 0; i < ids.length; i++) {
    if (!chosen[i]) continue;
    if (rng.next() < 0.8) inputIds[i] = spec.maskId;
    else if (rng.next() < 0.5) inputIds[i] = Math.floor(rng.next() * spec.vocabLength);
  }
  return { ...e, inputIds, tokenLabels };
}

/**
 * DataCollatorForWholeWordMask._whole_word_mask: tokens grouped into words (a token that does not start a word joins
 * the one before; special tokens are no candidates), the words shuffled, num_to_predict = min(512, max(1,
 * round(len(tokens) × p))) with the special tokens counted, whole words taken in shuffled order while they fit (one
 * that would overshoot is skipped, a later smaller one may still fit).
 */
function chooseWholeWords(e: MlmExample, real: (i: number) => boolean, p: number, rng: Rng): boolean[] {
  const n = e.inputIds.length;
  const words: number[][] = [];
  for (let i = 0; i < n; i++) {
    if (!real(i)) continue;
    if (words.length && e.wordStarts && e.wordStarts[i] === 0 && real(i - 1)) words.at(-1)!.push(i);
    else words.push([i]);
  }
  const order = rng.permutation(words.length);
  // Python's round() is banker's rounding
  const x = n * p;
  const rounded = Math.abs(x - Math.floor(x) - 0.5) < 1e-12 ? 2 * Math.round(x / 2) : Math.round(x);
  const budget = Math.min(512, Math.max(1, rounded));
  const chosen = new Array<boolean>(n).fill(false);
  let taken = 0;
  for (const w of order) {
    if (taken >= budget) break;
    const word = words[w]!;
    if (taken + word.length > budget) continue;
    for (const i of word) chosen[i] = true;
    taken += word.length;
  }
  return chosen;
}

/** The tokenizer's side of masking (its mask token, its special tokens, len(tokenizer)). */
export function maskingSpec(tokenizer: BertTokenizer, probability: number, wholeWord: boolean): MaskingSpec {
  const maskId = tokenizer.maskId;
  if (maskId === null) throw new Error("the tokenizer has no mask token");
  return { maskId, specialIds: tokenizer.specialIds, vocabLength: tokenizer.length, probability, wholeWord };
}

/** One tokenized text with its special tokens, and per token whether it starts a word (whole-word masking). */
export interface TokenizedText {
  ids: number[];
  wordStarts?: number[];
}

/**
 * run_mlm's group_texts: the tokenized texts (each with its own [CLS]/[SEP]) concatenated and cut into blocks of
 * `blockSize`, the remainder dropped; as datasets.map(batched=True) runs it, per 1000 texts.
 */
export function groupTexts(texts: TokenizedText[], blockSize: number, mapBatch = 1000): MlmExample[] {
  const out: MlmExample[] = [];
  for (let start = 0; start < texts.length; start += mapBatch) {
    const chunk = texts.slice(start, start + mapBatch);
    const ids = chunk.flatMap((t) => t.ids);
    const starts = chunk.flatMap((t) => t.wordStarts ?? t.ids.map(() => 1));
    const whole = chunk.some((t) => t.wordStarts);
    for (let b = 0; b + blockSize <= ids.length; b += blockSize) {
      const block = ids.slice(b, b + blockSize);
      out.push({ inputIds: block, tokenTypeIds: block.map(() => 0), label: -1, ...(whole ? { wordStarts: starts.slice(b, b + blockSize) } : {}) });
    }
  }
  return out;
}

/** --line-by-line: one example per text, truncated to `maxLength` (its [SEP] kept). */
export function lineExamples(texts: TokenizedText[], maxLength: number): MlmExample[] {
  return texts.map((t) => {
    const keep = t.ids.length > maxLength ? [...t.ids.slice(0, maxLength - 1), t.ids.at(-1)!] : t.ids;
    const starts = t.wordStarts && (t.ids.length > maxLength ? [...t.wordStarts.slice(0, maxLength - 1), 1] : t.wordStarts);
    return { inputIds: keep, tokenTypeIds: keep.map(() => 0), label: -1, ...(starts ? { wordStarts: starts } : {}) };
  });
}

/**
 * Texts to masked-LM examples: each tokenized with its special tokens (cut at maxLength with --line-by-line), with
 * whole-word starts when a segmenter is given, then group_texts' blocks or one example per text.
 */
export function mlmBlocks(tokenizer: BertTokenizer, texts: string[], maxLength: number, lineByLine: boolean, segment: ((text: string) => string[]) | null): { blocks: MlmExample[]; tokens: number; truncated: number } {
  let truncated = 0;
  const tokenized = texts.map((text): TokenizedText => {
    const enc = tokenizer.encode(text, null, lineByLine ? { maxLength } : {});
    if (enc.truncated) truncated++;
    return { ids: enc.inputIds, ...(segment ? { wordStarts: chineseWordStarts(enc.tokens, segment(text)) } : {}) };
  });
  const blocks = lineByLine ? lineExamples(tokenized, maxLength) : groupTexts(tokenized, maxLength);
  return { blocks, tokens: tokenized.reduce((n, t) => n + t.ids.length, 0), truncated };
}

/** Masks drawn once (evaluation: every evaluation scores the same tokens), from the seed and a salt per split. */
export function fixedMasks(blocks: MlmExample[], spec: MaskingSpec, seed: number, salt: number): EncodedExample[] {
  const rng = maskRng(seed, -1 - salt, 0);
  return blocks.map((b) => maskExample(b, spec, rng));
}

/** A seed per (run seed, step, micro-batch) for its masks: fresh masks every epoch, the same on a resumed run. */
export function maskRng(seed: number, step: number, microBatch: number): Rng {
  return new Rng(((seed * 2654435761) ^ (step * 40503 + microBatch * 7919 + 0x9e3779b9)) >>> 0);
}

/** HF's _is_chinese_char: the CJK Unified Ideographs blocks (not kana or hangul). */
export function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

const isChinese = (w: string): boolean => w.length > 0 && [...w].every((ch) => isChineseChar(ch.codePointAt(0)!));

/**
 * run_chinese_ref.py's reference ids as word starts. The segmenter's multi-character Chinese words form a set;
 * walking the BERT tokens, at each Chinese token the longest run of tokens whose concatenation is in the set is one
 * word, and its later tokens join it (chinese_ref); a ## piece joins its word as DataCollatorForWholeWordMask reads it.
 */
export function chineseWordStarts(tokens: string[], words: string[]): number[] {
  const set = new Set(words.filter((w) => [...w].length > 1 && isChinese(w)));
  const longest = Math.max(0, ...[...set].map((w) => [...w].length));
  const joins = new Array<boolean>(tokens.length).fill(false);
  for (let start = 0; start < tokens.length; ) {
    let step = 1;
    if (isChinese(tokens[start]!)) {
      for (let i = Math.min(tokens.length - start, longest); i > 1; i--) {
        if (!set.has(tokens.slice(start, start + i).join(""))) continue;
        for (let j = start + 1; j < start + i; j++) joins[j] = true;
        step = i;
        break;
      }
    }
    start += step;
  }
  return tokens.map((t, i) => (t.startsWith("##") || (joins[i] && [...t].length === 1 && isChinese(t)) ? 0 : 1));
}

/** The jieba segmenter (jieba-wasm: jieba-rs compiled to WebAssembly; no native build, loaded only when asked). */
export async function loadSegmenter(): Promise<(text: string) => string[]> {
  const jieba = await import("jieba-wasm");
  return (text) => jieba.cut(text, true);
}
