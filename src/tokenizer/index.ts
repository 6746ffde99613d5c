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

/**
 * The tokenizer.json HF builds for a byte-level BPE folder that has only vocab.json and merges.txt (older RoBERTa
 * uploads): ByteLevel pre-tokenizer (the GPT-2 split), BPE without unk, RobertaProcessing.
 */
export function byteLevelBpeJson(vocabPath: string, mergesPath: string, cfg: TokenizerConfig & { add_prefix_space?: boolean; bos_token?: string; eos_token?: string }): Record<string, unknown> {
  const vocab = readJson(vocabPath) as Record<string, number>;
  const merges = readFileSync(mergesPath, "utf8").split("\n").filter((l, i) => l.trim() !== "" && !(i === 0 && l.startsWith("#version")));
  const cls = cfg.cls_token ?? cfg.bos_token ?? "<s>";
  const sep = cfg.sep_token ?? cfg.eos_token ?? "</s>";
  const mask = cfg.mask_token ?? "<mask>";
  const specials = [cls, cfg.pad_token ?? "<pad>", sep, cfg.unk_token ?? "<unk>", mask].filter((t, i, all) => t in vocab && all.indexOf(t) === i);
  const prefixSpace = cfg.add_prefix_space ?? false;
  return {
    version: "1.0", truncation: null, padding: null,
    added_tokens: specials.map((t) => ({ id: vocab[t], content: t, single_word: false, lstrip: t === mask, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: prefixSpace, trim_offsets: true, use_regex: true },
    post_processor: { type: "RobertaProcessing", sep: [sep, vocab[sep]], cls: [cls, vocab[cls]], trim_offsets: true, add_prefix_space: prefixSpace },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
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

/** One piece of a post-processor template: a special token, or the (truncated) first or second text. */
type TemplatePiece = { special: string; typeId: number } | { sequence: "A" | "B"; typeId: number };

interface Template {
  single: TemplatePiece[];
  pair: TemplatePiece[];
}

/**
 * Where the special tokens go and which type ids the pieces get, from tokenizer.json's post_processor as the Rust
 * crate reads it: BertProcessing ([CLS] A [SEP] B [SEP], B typed 1), RobertaProcessing (<s> A </s></s> B </s>, all
 * typed 0), TemplateProcessing (as written), or the first of those inside a Sequence.
 */
function templateOf(post: unknown, cfg: TokenizerConfig): Template {
  const p = (post ?? null) as Record<string, unknown> | null;
  const pair = (x: unknown): string => (Array.isArray(x) ? String(x[0]) : String(x));
  if (p?.type === "Sequence") {
    const inner = (p.processors as unknown[] | undefined)?.find((q) => ["BertProcessing", "RobertaProcessing", "TemplateProcessing"].includes(String((q as { type?: unknown }).type)));
    return templateOf(inner ?? null, cfg);
  }
  if (p?.type === "RobertaProcessing") {
    const [cls, sep] = [pair(p.cls), pair(p.sep)];
    const s = (t: string): TemplatePiece => ({ special: t, typeId: 0 });
    return { single: [s(cls), { sequence: "A", typeId: 0 }, s(sep)], pair: [s(cls), { sequence: "A", typeId: 0 }, s(sep), s(sep), { sequence: "B", typeId: 0 }, s(sep)] };
  }
  if (p?.type === "TemplateProcessing") {
    const pieces = (list: unknown): TemplatePiece[] => (list as Record<string, { id: string; type_id: number }>[]).map((x) =>
      x.SpecialToken ? { special: x.SpecialToken.id, typeId: x.SpecialToken.type_id } : { sequence: x.Sequence!.id as "A" | "B", typeId: x.Sequence!.type_id });
    return { single: pieces(p.single), pair: pieces(p.pair) };
  }
  // BertProcessing, or no post-processor (older folders): BERT's layout
  const cls = p?.type === "BertProcessing" ? pair(p.cls) : cfg.cls_token ?? "[CLS]";
  const sep = p?.type === "BertProcessing" ? pair(p.sep) : cfg.sep_token ?? "[SEP]";
  return {
    single: [{ special: cls, typeId: 0 }, { sequence: "A", typeId: 0 }, { special: sep, typeId: 0 }],
    pair: [{ special: cls, typeId: 0 }, { sequence: "A", typeId: 0 }, { special: sep, typeId: 0 }, { sequence: "B", typeId: 1 }, { special: sep, typeId: 1 }],
  };
}

export class BertTokenizer {
  private readonly tk: Tokenizer;
  private readonly template: Template;
  /** The first special token of a single text's template ([CLS], <s>) and the last ([SEP], </s>). */
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
  readonly cls: string;
  readonly sep: string;
  readonly pad: string;
  private readonly maskToken: string;
  /** The largest type id a text pair gets (1 for BERT, 0 for RoBERTa and XLM-R). */
  readonly pairTypeId: number;
  /** Added tokens that strip the whitespace beside them (see pieces). */
  private readonly stripped = new Map<string, { lstrip: boolean; rstrip: boolean }>();

  constructor(tokenizerJson: Record<string, unknown>, config: Record<string, unknown>) {
    this.tk = new Tokenizer(tokenizerJson, config);
    const cfg = config as TokenizerConfig;
    this.template = templateOf(tokenizerJson.post_processor, cfg);
    const specials = this.template.single.filter((x): x is { special: string; typeId: number } => "special" in x);
    this.cls = specials[0]?.special ?? cfg.cls_token ?? "[CLS]";
    this.sep = specials.at(-1)?.special ?? cfg.sep_token ?? "[SEP]";
    this.pad = cfg.pad_token ?? "[PAD]";
    this.maskToken = cfg.mask_token ?? (this.tk.token_to_id("[MASK]") !== undefined ? "[MASK]" : "<mask>");
    const id = (t: string): number => {
      const v = this.tk.token_to_id(t);
      if (v === undefined) throw new WeitiaoError(`the tokenizer has no ${t} token`);
      return v;
    };
    this.clsId = id(this.cls);
    this.sepId = id(this.sep);
    this.padId = id(this.pad);
    for (const piece of [...this.template.single, ...this.template.pair]) if ("special" in piece) id(piece.special);
    this.pairTypeId = Math.max(...this.template.pair.map((x) => x.typeId));
    for (const t of (tokenizerJson.added_tokens ?? []) as { content: string; lstrip?: boolean; rstrip?: boolean }[]) {
      if (t.lstrip || t.rstrip) this.stripped.set(t.content, { lstrip: !!t.lstrip, rstrip: !!t.rstrip });
    }
    const pre = tokenizerJson.pre_tokenizer as { type?: string; pretokenizers?: { type?: string }[] } | null | undefined;
    this.byteLevel = pre?.type === "ByteLevel" || (pre?.pretokenizers ?? []).some((p) => p.type === "ByteLevel");
    const model = tokenizerJson.model as { continuing_subword_prefix?: string | null; unk_token?: string | null } | undefined;
    this.subwordPrefix = model?.continuing_subword_prefix ?? "";
    this.unk = model?.unk_token ?? null;
  }

  private readonly subwordPrefix: string;
  private readonly unk: string | null;

  /** A byte-level BPE (RoBERTa): words are encoded with a leading space, as run_ner's add_prefix_space=True does. */
  private readonly byteLevel: boolean;

  /** Load from a model folder: tokenizer.json if present, else vocab.txt (+ tokenizer_config.json). */
  static fromDir(dir: string): BertTokenizer {
    const configPath = modelFile(dir, "tokenizer_config.json");
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const jsonPath = modelFile(dir, "tokenizer.json");
    if (existsSync(jsonPath)) return new BertTokenizer(readJson(jsonPath), config);
    const bpeVocab = modelFile(dir, "vocab.json");
    const merges = modelFile(dir, "merges.txt");
    if (existsSync(bpeVocab) && existsSync(merges)) {
      return new BertTokenizer(byteLevelBpeJson(bpeVocab, merges, config as TokenizerConfig), config);
    }
    const vocabPath = modelFile(dir, "vocab.txt");
    if (existsSync(vocabPath)) return new BertTokenizer(bertTokenizerJson(readVocab(vocabPath), config as TokenizerConfig), config);
    const sentencePiece = ["sentencepiece.bpe.model", "spiece.model", "tokenizer.model"].find((f) => existsSync(modelFile(dir, f)));
    if (sentencePiece) {
      throw new WeitiaoError(
        `${dir}: the tokenizer is only a SentencePiece model (${sentencePiece}) and weitiao reads tokenizer.json: write one with ` +
          "Python transformers (AutoTokenizer.from_pretrained(dir).save_pretrained(dir)) or use a hub copy that has it",
      );
    }
    throw new WeitiaoError(`${dir}: no tokenizer.json, vocab.txt or vocab.json + merges.txt`);
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
    if (this.stripped.size === 0) return { tokens: e.tokens, ids: e.ids };
    // An added token with lstrip/rstrip (RoBERTa's <mask>) swallows the whitespace beside it, and the Rust crate
    // reports that text as the token (" <mask>"); the JS library reports the bare content. Its occurrences are found
    // in order in the text (added tokens always match where they are written).
    let cursor = 0;
    const tokens = e.tokens.map((t: string) => {
      const strip = this.stripped.get(t);
      const at = strip ? text.indexOf(t, cursor) : -1;
      if (!strip || at < 0) return t;
      let start = at;
      let end = at + t.length;
      if (strip.lstrip) while (start > cursor && /\s/.test(text[start - 1]!)) start--;
      if (strip.rstrip) while (end < text.length && /\s/.test(text[end]!)) end++;
      cursor = end;
      return text.slice(start, end);
    });
    return { tokens, ids: e.ids };
  }

  encode(text: string, pair: string | null = null, opts: EncodeOptions = {}): Encoding {
    const a = this.pieces(text);
    const b = pair === null ? null : this.pieces(pair);
    const template = b ? this.template.pair : this.template.single;
    const specials = template.filter((x) => "special" in x).length;
    let [na, nb] = [a.ids.length, b ? b.ids.length : 0];
    let truncated = false;
    if (opts.maxLength !== undefined) {
      const budget = Math.max(0, opts.maxLength - specials);
      [na, nb] = truncatedLengths(a.ids.length, b ? b.ids.length : null, budget, opts.truncation ?? "longest_first");
      truncated = na < a.ids.length || (b !== null && nb < b.ids.length);
    }
    const tokens: string[] = [];
    const inputIds: number[] = [];
    const tokenTypeIds: number[] = [];
    for (const piece of template) {
      if ("special" in piece) {
        tokens.push(piece.special);
        inputIds.push(this.tk.token_to_id(piece.special)!);
        tokenTypeIds.push(piece.typeId);
        continue;
      }
      const [src, n] = piece.sequence === "A" ? [a, na] : [b!, nb];
      tokens.push(...src.tokens.slice(0, n));
      inputIds.push(...src.ids.slice(0, n));
      for (let i = 0; i < n; i++) tokenTypeIds.push(piece.typeId);
    }
    return { tokens, inputIds, tokenTypeIds, attentionMask: inputIds.map(() => 1), truncated };
  }

  /**
   * Encode pre-split words as HF's `tokenizer(words, is_split_into_words=True)`: each word alone through the
   * pipeline, its tokens tagged with its index (`wordIds`, null for special tokens); a word that yields no token (a
   * space) has none. Truncation cuts tokens at `maxLength` with the specials counted, as for a single text.
   */
  encodeWords(words: string[], opts: { maxLength?: number } = {}): Encoding & { wordIds: (number | null)[] } {
    const tokens: string[] = [];
    const ids: number[] = [];
    const owners: number[] = [];
    words.forEach((w, i) => {
      const p = this.pieces(this.byteLevel ? ` ${w}` : w);
      tokens.push(...p.tokens);
      ids.push(...p.ids);
      for (let k = 0; k < p.ids.length; k++) owners.push(i);
    });
    const template = this.template.single;
    const specials = template.filter((x) => "special" in x).length;
    const n = opts.maxLength === undefined ? ids.length : Math.min(ids.length, Math.max(0, opts.maxLength - specials));
    const out = { tokens: [] as string[], inputIds: [] as number[], tokenTypeIds: [] as number[], wordIds: [] as (number | null)[] };
    for (const piece of template) {
      if ("special" in piece) {
        out.tokens.push(piece.special);
        out.inputIds.push(this.tk.token_to_id(piece.special)!);
        out.tokenTypeIds.push(piece.typeId);
        out.wordIds.push(null);
        continue;
      }
      out.tokens.push(...tokens.slice(0, n));
      out.inputIds.push(...ids.slice(0, n));
      for (let k = 0; k < n; k++) {
        out.tokenTypeIds.push(piece.typeId);
        out.wordIds.push(owners[k]!);
      }
    }
    return { ...out, attentionMask: out.inputIds.map(() => 1), truncated: n < ids.length };
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

  /**
   * Code-point spans, within `word`, of the pieces encodeWords gave it (end exclusive). The JS tokenizers library
   * reports no offsets, so they are rebuilt from the pieces' text: the continuing-subword prefix (##) and the metaspace
   * (▁) are not in the word, and a byte-level piece holds one byte per character. Where normalisation changes a
   * length (a stripped accent) a WordPiece span is approximate; the last piece always ends at the word's end.
   */
  pieceSpans(word: string, pieces: string[]): [number, number][] {
    const chars = [...word];
    if (this.byteLevel) {
      // A piece's span is the characters its bytes touch (a character's bytes may be split over two pieces, which
      // then both cover it, as HF's offsets do); byte −1 is the space encodeWords put before the word.
      const charOf: number[] = [];
      chars.forEach((ch, i) => charOf.push(...new Array<number>(Buffer.byteLength(ch)).fill(i)));
      let byte = -1;
      return pieces.map((t) => {
        const first = Math.max(byte, 0);
        byte += [...t].length;
        return byte <= first ? [charOf[first] ?? chars.length, charOf[first] ?? chars.length] : [charOf[first]!, charOf[byte - 1]! + 1];
      });
    }
    let at = 0;
    return pieces.map((t, k) => {
      const start = Math.min(at, chars.length);
      let text = t;
      if (k > 0 && this.subwordPrefix && text.startsWith(this.subwordPrefix)) text = text.slice(this.subwordPrefix.length);
      text = text.replace(/^\u2581+/, "");
      // A lone metaspace covers the character it stands before, as HF's offsets have it
      if (text === "" && t !== "" && k < pieces.length - 1) return [start, Math.min(start + 1, chars.length)];
      const end = k === pieces.length - 1 ? chars.length : Math.min(chars.length, start + (t === this.unk ? 1 : [...text].length));
      at = end;
      return [start, end];
    });
  }

  idToToken(id: number): string | undefined {
    return this.tk.id_to_token(id);
  }

  /** The ids of the special added tokens ([CLS], [SEP], [PAD], [MASK], …): what a masked LM never chooses. */
  get specialIds(): Set<number> {
    const out = new Set<number>();
    for (const [id, t] of this.tk.get_added_tokens_decoder()) if (t.special) out.add(id);
    for (const id of [this.clsId, this.sepId, this.padId]) out.add(id);
    return out;
  }

  /** The mask token ([MASK], <mask>) and its id, or null when the tokenizer has none. */
  get mask(): { token: string; id: number } | null {
    const token = this.maskToken;
    const id = this.tk.token_to_id(token);
    return id === undefined ? null : { token, id };
  }

  get maskId(): number | null {
    return this.mask?.id ?? null;
  }

  /**
   * len(tokenizer) as HF counts it: the distinct tokens, added ones included (bert-base-chinese's vocab.txt has 53
   * duplicates, so this is 21075 against vocab_size 21128). Masked LM draws its random replacements below it.
   */
  get length(): number {
    let n = 0;
    for (const k of this.tk.get_vocab().keys()) if (typeof k === "string") n++;
    return n;
  }

  /** Ids back to text, as the tokenizer's decoder writes it (WordPiece: tokens joined by spaces, ## glued). */
  decode(ids: number[], skipSpecialTokens = false): string {
    return this.tk.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }
}
