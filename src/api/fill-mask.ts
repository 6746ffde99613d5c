/**
 * fillMask(): what HF's FillMaskPipeline returns for each text — at every mask token the top-k tokens of the softmax
 * over the vocabulary, each as {score, token, token_str, sequence}; a list for one mask, a list of lists for several.
 */
import { collate, type EncodedExample } from "../data/dataset.js";
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
}

export function fillMask(loaded: LoadedModel, texts: string[], opts: FillMaskOptions = {}): FillMaskResult[] {
  const { model, tokenizer } = loaded;
  if (model.task !== "fill-mask") throw new WeitiaoError(`${loaded.dir}: fill-mask needs a masked-LM model, not a ${model.task} one`);
  const mask = tokenizer.mask;
  if (!mask) throw new WeitiaoError(`${loaded.dir}: the tokenizer has no mask token`);
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1) throw new WeitiaoError(`--top-k must be a positive integer, got ${topK}`);
  const maxLength = inputLength(loaded, opts.maxLength);
  const V = model.config.vocab_size;
  // Each text alone as the pipeline encodes it; its mask positions are the rows the head reads
  const encoded: EncodedExample[] = texts.map((t) => {
    const e = tokenizer.encode(t, null, { maxLength });
    return { inputIds: e.inputIds, tokenTypeIds: e.tokenTypeIds, label: -1, tokenLabels: e.inputIds.map((id) => (id === mask.id ? 0 : -100)) };
  });
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
