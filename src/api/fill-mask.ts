/**
 * fillMask(): what HF's FillMaskPipeline returns for each text — at every mask token the top-k tokens of the softmax
 * over the vocabulary, each as {score, token, token_str, sequence}; a list for one mask, a list of lists for several.
 */
import { collate, type EncodedExample, extractExamples } from "../data/dataset.js";
import { fixedMasks, loadSegmenter, maskingSpec, mlmBlocks } from "../data/mlm.js";
import { readRowsMany, type ReadOptions } from "../data/read.js";
import { evaluate, prefixed } from "../train/trainer.js";
import { lengthSortedBatches } from "../data/split.js";
import type { MaskCandidate } from "../model/heads/masked-lm.js";
import { WeitiaoError } from "../util/errors.js";
import { inputLength, type LoadedModel } from "./predict.js";

export interface FillMaskCandidate {
  score: number;
  token: number;
  /** decode([token]). */
  token_str: string;
  /** The text with this mask filled: special tokens left out when it has one mask, kept (other masks too) with several. */
  sequence: string;
}

/** One mask: its candidates; several: one list per mask, in text order; none: an empty list (see FillMaskOptions). */
export type FillMaskResult = FillMaskCandidate[] | FillMaskCandidate[][];

export interface FillMaskOptions {
  /** Candidates per mask (FillMaskPipeline's top_k, default 5). */
  topK?: number;
  /** Default: the length the model was trained with, else 512. */
  maxLength?: number;
  batchSize?: number;
  /** Called with the indices of texts that hold no mask token (their result is []); HF's pipeline raises instead. */
  onNoMask?: (indices: number[]) => void;
  /** Called when truncation to maxLength cut mask tokens off (how many, over all texts). */
  onTruncatedMasks?: (count: number, maxLength: number) => void;
}

export function fillMask(loaded: LoadedModel, texts: string[], opts: FillMaskOptions = {}): FillMaskResult[] {
  const { model, tokenizer } = loaded;
  if (model.task !== "fill-mask") throw new WeitiaoError(`${loaded.dir}: fill-mask needs a masked-LM model, not a ${model.task} one`);
  const mask = tokenizer.mask;
  if (!mask) throw new WeitiaoError(`${loaded.dir}: the tokenizer has no mask token`);
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1) throw new WeitiaoError(`--top-k must be a positive integer, got ${topK}`);
  if (opts.maxLength !== undefined && opts.maxLength < 3) throw new WeitiaoError(`--max-length must be at least 3 (the special tokens and one mask), got ${opts.maxLength}`);
  const maxLength = inputLength(loaded, opts.maxLength);
  const V = model.config.vocab_size;
  // Each text alone as the pipeline encodes it; its mask positions are the rows the head reads
  let cut = 0;
  const encoded: EncodedExample[] = texts.map((t) => {
    const e = tokenizer.encode(t, null, { maxLength });
    if (e.truncated) {
      const all = tokenizer.encode(t).inputIds.filter((id) => id === mask.id).length;
      cut += all - e.inputIds.filter((id) => id === mask.id).length;
    }
    return { inputIds: e.inputIds, tokenTypeIds: e.tokenTypeIds, label: -1, tokenLabels: e.inputIds.map((id) => (id === mask.id ? 0 : -100)) };
  });
  if (cut) opts.onTruncatedMasks?.(cut, maxLength);
  const out: FillMaskResult[] = new Array(texts.length);
  const none = encoded.flatMap((e, i) => (e.tokenLabels!.includes(0) ? [] : [i]));
  for (const i of none) out[i] = [];
  if (none.length) opts.onNoMask?.(none);
  const withMask = encoded.flatMap((e, i) => (e.tokenLabels!.includes(0) ? [i] : []));
  for (const rows of lengthSortedBatches(withMask.map((i) => encoded[i]!.inputIds.length), opts.batchSize ?? 32)) {
    const batch = rows.map((r) => encoded[withMask[r]!]!);
    const { input } = collate(batch, tokenizer.padId, true);
    const { logits } = model.forward(input, { train: false });
    let m = 0;
    rows.forEach((r, b) => {
      const ids = batch[b]!.inputIds;
      const positions = ids.flatMap((id, k) => (id === mask.id ? [k] : []));
      const perMask = positions.map((pos) => {
        const candidates = model.head.prediction(Array.from(logits.subarray(m * V, ++m * V)), [], { threshold: 0, topLabels: topK }) as MaskCandidate[];
        return candidates.map(({ token, score }): FillMaskCandidate => {
          const filled = ids.slice();
          filled[pos] = token;
          return { score, token, token_str: tokenizer.decode([token]), sequence: tokenizer.decode(filled, positions.length === 1) };
        });
      });
      out[withMask[r]!] = positions.length === 1 ? perMask[0]! : perMask;
    });
  }
  return out;
}

export interface EvaluateMaskedOptions {
  textColumn?: string;
  /** Default: the length the model was trained with, else 512. */
  maxLength?: number;
  batchSize?: number;
  /** One example per line instead of group_texts' blocks (as the model was trained). */
  lineByLine?: boolean;
  mlmProbability?: number;
  wholeWordMask?: boolean;
  /** The masks are drawn once from it (default 42), so runs compare. */
  seed?: number;
  read?: ReadOptions;
}

/** A masked LM on a text file (.txt lines, or a CSV/JSONL text column): eval loss, masked-token accuracy, perplexity. */
export async function evaluateMaskedFile(loaded: LoadedModel, file: string, opts: EvaluateMaskedOptions = {}): Promise<Record<string, unknown>> {
  const { model, tokenizer } = loaded;
  const lineByLine = opts.lineByLine ?? false;
  const p = opts.mlmProbability ?? 0.15;
  if (!(p > 0 && p < 1)) throw new WeitiaoError(`--mlm-probability must be in (0, 1), got ${p}`);
  if (opts.maxLength !== undefined && opts.maxLength < 3) throw new WeitiaoError(`--max-length must be at least 3, got ${opts.maxLength}`);
  const cols = { textColumn: opts.textColumn ?? "text", labelColumn: "\u0000", keepEmptyText: !lineByLine };
  const { examples, skipped } = extractExamples(readRowsMany(file, { ...opts.read, plainText: true }), cols, false);
  const maxLength = inputLength(loaded, opts.maxLength);
  const segment = opts.wholeWordMask ? await loadSegmenter() : null;
  const { blocks, tokens } = mlmBlocks(tokenizer, examples.map((e) => e.text), maxLength, lineByLine, segment);
  if (blocks.length === 0) throw new WeitiaoError(`${file}: ${tokens} tokens, too few for one block of --max-length ${maxLength}: lower --max-length or use --line-by-line`);
  const spec = maskingSpec(tokenizer, p, opts.wholeWordMask ?? false);
  const masked = fixedMasks(blocks, spec, opts.seed ?? 42, 0);
  if (!masked.some((e) => e.tokenLabels!.some((l) => l >= 0))) throw new WeitiaoError(`${file}: no token was chosen for masking (too little text): nothing to score`);
  const ev = evaluate(model, masked, opts.batchSize ?? 64, tokenizer.padId);
  return { rows: examples.length, skipped: skipped.length, blocks: blocks.length, eval_loss: ev.loss, ...prefixed("eval_", ev.metrics), perplexity: ev.metrics.perplexity };
}
