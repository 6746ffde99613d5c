/**
 * BERT tokenization with HF's exact behaviour. Normalisation, pre-tokenisation and WordPiece come from
 * @huggingface/tokenizers (pure TypeScript, maintained by Hugging Face for transformers.js), which reads the
 * tokenizer.json format directly. That library has no truncation or padding, so those are implemented here with
 * the rules of the Rust `tokenizers` crate (longest_first / only_first / only_second, padding right).
 *
 * A model folder with only vocab.txt (older checkpoints) gets the same pipeline, built in memory from
 * tokenizer_config.json options or BERT's defaults.
 */
import { existsSync, readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { WeitiaoError } from "../util/errors.js";
import { modelFile } from "../io/model-file.js";

export type TruncationStrategy = "longest_first" | "only_first" | "only_second";

export interface EncodeOptions {
  /** Total length cap including special tokens; no truncation when undefined. */
  maxLength?: number;
  truncation?: TruncationStrategy;
}

export interface Encoding {
  tokens: string[];
  inputIds: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
  /** True when truncation removed tokens. */
  truncated: boolean;
}

interface TokenizerConfig {
  do_lower_case?: boolean;
  strip_accents?: boolean | null;
  tokenize_chinese_chars?: boolean;
  never_split?: string[] | null;
  cls_token?: string;
  sep_token?: string;
  pad_token?: string;
  unk_token?: string;
  mask_token?: string;
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new WeitiaoError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** vocab.txt → token→id, one token per line; a duplicate keeps its LAST index, as HF's load_vocab does. */
export function readVocab(path: string): Map<string, number> {
  const lines = readFileSync(path, "utf8").replace(/\r\n?/g, "\n").split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const vocab = new Map<string, number>();
  lines.forEach((tok, i) => vocab.set(tok, i));
  return vocab;
}

/** The tokenizer.json HF's BertTokenizerFast converter would produce from vocab.txt and its options. */
export function bertTokenizerJson(vocab: Map<string, number>, cfg: TokenizerConfig): Record<string, unknown> {
  const cls = cfg.cls_token ?? "[CLS]";
  const sep = cfg.sep_token ?? "[SEP]";
  const pad = cfg.pad_token ?? "[PAD]";
  const unk = cfg.unk_token ?? "[UNK]";
  const mask = cfg.mask_token ?? "[MASK]";
  const lower = cfg.do_lower_case ?? true;
  const specials = [pad, unk, cls, sep, mask, ...(cfg.never_split ?? [])].filter((t) => vocab.has(t));
  const idOf = (t: string): number => {
    const id = vocab.get(t);
    if (id === undefined) throw new WeitiaoError(`vocab.txt has no ${t} token`);
    return id;
  };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [...new Set(specials)].map((t) => ({
      id: idOf(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: cfg.tokenize_chinese_chars ?? true,
      strip_accents: cfg.strip_accents ?? null,
      lowercase: lower,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [idOf(cls)], tokens: [cls] },
        [sep]: { id: sep, ids: [idOf(sep)], tokens: [sep] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece", unk_token: unk, continuing_subword_prefix: "##", max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab),
    },
  };
}

/** Lengths each sequence keeps under `budget` tokens (specials excluded), as the Rust crate computes them. */
export function truncatedLengths(n1: number, n2: number | null, budget: number, strategy: TruncationStrategy): [number, number] {
  if (n2 === null) {
    if (strategy === "only_second") throw new WeitiaoError("truncation only_second needs a text pair");
    return [Math.min(n1, budget), 0];
  }
  if (n1 + n2 <= budget) return [n1, n2];
  if (strategy === "longest_first") {
    const swap = n1 > n2;
    let short = swap ? n2 : n1;
    let long: number;
    long = short > budget ? short : Math.max(short, budget - short);
    if (short + long > budget) {
      short = Math.floor(budget / 2);
      long = short + (budget % 2);
    }
    return swap ? [long, short] : [short, long];
  }
  const remove = n1 + n2 - budget;
  const target = strategy === "only_first" ? n1 : n2;
  if (target <= remove) {
    throw new WeitiaoError(`cannot truncate with ${strategy}: that sequence has ${target} tokens and ${remove} must go`);
  }
  return strategy === "only_first" ? [n1 - remove, n2] : [n1, n2 - remove];
}

/** A tokenizer whose ids run past config.json's vocab_size would index outside the embedding table: refuse at load,
 *  naming both files, rather than at the first batch that happens to contain such a token. */
export function checkTokenizerFits(tokenizer: BertTokenizer, vocabSize: number, dir: string): void {
  const max = tokenizer.maxId;
  if (max >= vocabSize) {
    throw new WeitiaoError(
      `${dir}: the tokenizer has ids up to ${max} but config.json's vocab_size is ${vocabSize}: the tokenizer and the model do not match`,
    );
  }
}

export class BertTokenizer {
  private readonly tk: Tokenizer;
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
  readonly cls: string;
  readonly sep: string;
  readonly pad: string;

  constructor(tokenizerJson: Record<string, unknown>, config: Record<string, unknown>) {
    this.tk = new Tokenizer(tokenizerJson, config);
    const cfg = config as TokenizerConfig;
    this.cls = cfg.cls_token ?? "[CLS]";
    this.sep = cfg.sep_token ?? "[SEP]";
    this.pad = cfg.pad_token ?? "[PAD]";
    const id = (t: string): number => {
      const v = this.tk.token_to_id(t);
      if (v === undefined) throw new WeitiaoError(`the tokenizer has no ${t} token`);
      return v;
    };
    this.clsId = id(this.cls);
    this.sepId = id(this.sep);
    this.padId = id(this.pad);
  }

  /** Load from a model folder: tokenizer.json if present, else vocab.txt (+ tokenizer_config.json). */
  static fromDir(dir: string): BertTokenizer {
    const configPath = modelFile(dir, "tokenizer_config.json");
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const jsonPath = modelFile(dir, "tokenizer.json");
    if (existsSync(jsonPath)) return new BertTokenizer(readJson(jsonPath), config);
    const vocabPath = modelFile(dir, "vocab.txt");
    if (existsSync(vocabPath)) return new BertTokenizer(bertTokenizerJson(readVocab(vocabPath), config as TokenizerConfig), config);
    throw new WeitiaoError(`${dir}: no tokenizer.json or vocab.txt`);
  }

  get vocabSize(): number {
    return this.tk.get_vocab().size;
  }

  /** The largest id this tokenizer can emit (added tokens included): it must fit the model's embedding table. */
  get maxId(): number {
    let max = -1;
    for (const id of this.tk.get_vocab().values()) if (id > max) max = id;
    return max;
  }

  /** Word-piece tokens and ids of one text, without special tokens. */
  private pieces(text: string): { tokens: string[]; ids: number[] } {
    const e = this.tk.encode(text, { add_special_tokens: false });
    return { tokens: e.tokens, ids: e.ids };
  }

  encode(text: string, pair: string | null = null, opts: EncodeOptions = {}): Encoding {
    const a = this.pieces(text);
    const b = pair === null ? null : this.pieces(pair);
    const specials = b ? 3 : 2;
    let [na, nb] = [a.ids.length, b ? b.ids.length : 0];
    let truncated = false;
    if (opts.maxLength !== undefined) {
      const budget = Math.max(0, opts.maxLength - specials);
      [na, nb] = truncatedLengths(a.ids.length, b ? b.ids.length : null, budget, opts.truncation ?? "longest_first");
      truncated = na < a.ids.length || (b !== null && nb < b.ids.length);
    }
    const tokens = [this.cls, ...a.tokens.slice(0, na), this.sep];
    const inputIds = [this.clsId, ...a.ids.slice(0, na), this.sepId];
    const tokenTypeIds = new Array<number>(inputIds.length).fill(0);
    if (b) {
      tokens.push(...b.tokens.slice(0, nb), this.sep);
      const bIds = [...b.ids.slice(0, nb), this.sepId];
      inputIds.push(...bIds);
      tokenTypeIds.push(...bIds.map(() => 1));
    }
    return { tokens, inputIds, tokenTypeIds, attentionMask: inputIds.map(() => 1), truncated };
  }

  /** Pad encodings (in place copies) on the right to `length`, or to the longest when undefined. */
  padBatch(encodings: Encoding[], length?: number): Encoding[] {
    const target = length ?? Math.max(0, ...encodings.map((e) => e.inputIds.length));
    return encodings.map((e) => {
      const n = Math.max(0, target - e.inputIds.length);
      return {
        tokens: [...e.tokens, ...new Array<string>(n).fill(this.pad)],
        inputIds: [...e.inputIds, ...new Array<number>(n).fill(this.padId)],
        tokenTypeIds: [...e.tokenTypeIds, ...new Array<number>(n).fill(0)],
        attentionMask: [...e.attentionMask, ...new Array<number>(n).fill(0)],
        truncated: e.truncated,
      };
    });
  }

  idToToken(id: number): string | undefined {
    return this.tk.id_to_token(id);
  }
}
