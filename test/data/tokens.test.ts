/**
 * NER data (src/data/tokens.ts): word-piece encoding of pre-split words and run_ner's label alignment against the
 * fixture's tokenizer-words.json (HF tokenizers' is_split_into_words), CLUENER spans to BIO, CoNLL text.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeTokenExamples, readTokenRows, resolveTagNames, spansToBio } from "../../src/data/tokens.js";
import { BertTokenizer } from "../../src/tokenizer/index.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { FIXTURES, TINY, tempDir } from "../helpers.js";

const NER = join(FIXTURES, "ner", "bert-tiny-chinese-ner");
const NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"];
const cases = JSON.parse(readFileSync(join(NER, "reference", "tokenizer-words.json"), "utf8")) as {
  words: string[]; ner_tags: string[]; max_length: number | null; input_ids: number[]; word_ids: (number | null)[]; labels: number[];
}[];

test("pre-split words encode as HF's is_split_into_words: ids, word ids and aligned labels equal the fixture's cases", () => {
  const tk = BertTokenizer.fromDir(TINY);
  for (const c of cases) {
    const enc = tk.encodeWords(c.words, { maxLength: c.max_length ?? undefined });
    assert.deepEqual(enc.inputIds, c.input_ids, c.words.join(" "));
    assert.deepEqual(enc.wordIds, c.word_ids);
    const { encoded } = encodeTokenExamples(tk, [{ words: c.words, tags: c.ner_tags, file: "x", line: 1 }], NAMES, c.max_length ?? 512);
    assert.deepEqual(encoded[0]!.tokenLabels, c.labels);
  }
  // Mutation: a label on every piece of a word (not run_ner's first piece only) differs on the multi-piece words.
  const c = cases[1]!;
  const every = c.word_ids.map((w) => (w === null ? -100 : NAMES.indexOf(c.ner_tags[w]!)));
  assert.notDeepEqual(every, c.labels, "the check can fail");
  // --label-all-tokens: the later pieces get the word's tag, B- made I- (run_ner's b_to_i_label)
  const tk2 = BertTokenizer.fromDir(TINY);
  const all = encodeTokenExamples(tk2, [{ words: c.words, tags: c.ner_tags, file: "x", line: 1 }], NAMES, 512, true).encoded[0]!.tokenLabels!;
  const bank = c.word_ids.flatMap((w, k) => (w === 2 ? [all[k]] : []));
  assert.deepEqual(bank, [3, 4, 4, 4], "浙商银行: B-LOC then I-LOC on its three later pieces");
  assert.deepEqual(all.filter((_, k) => c.word_ids[k] === 1), [0, 0, 0], "world's: O on every piece");
});

test("the NER fixture's rows tokenize to its reference ids and labels", () => {
  const tk = BertTokenizer.fromDir(TINY);
  const manifest = JSON.parse(readFileSync(join(NER, "reference", "manifest.json"), "utf8")) as { examples: { tokens: string[]; ner_tags: string[] }[] };
  const { encoded, truncatedRows } = encodeTokenExamples(tk, manifest.examples.map((e) => ({ words: e.tokens, tags: e.ner_tags, file: "x", line: 1 })), NAMES, 40);
  assert.equal(truncatedRows, 2, "two rows are longer than max_length 40");
  const f = SafetensorsFile.open(join(NER, "reference", "forward.safetensors"));
  try {
    const [, T] = f.info("input_ids").shape as [number, number];
    const ids = f.int("input_ids");
    const labels = f.int("labels");
    const mask = f.int("attention_mask");
    encoded.forEach((e, b) => {
      const n = mask.subarray(b * T, b * T + T).reduce((a, v) => a + v, 0);
      assert.deepEqual(e.inputIds, [...ids.subarray(b * T, b * T + n)], `row ${b} ids`);
      assert.deepEqual(e.tokenLabels, [...labels.subarray(b * T, b * T + n)], `row ${b} labels`);
    });
  } finally {
    f.close();
  }
});

test("CLUENER spans become BIO tags; a span whose text does not match is an error naming file:line; overlaps are skipped and counted", () => {
  const chars = [..."浙商银行企业信贷部叶老桂博士"];
  const r = spansToBio(chars, { company: { 浙商银行: [[0, 3]] }, name: { 叶老桂: [[9, 11]] } }, "f:1");
  assert.deepEqual(r.tags, ["B-company", "I-company", "I-company", "I-company", "O", "O", "O", "O", "O", "B-name", "I-name", "I-name", "O", "O"]);
  assert.equal(spansToBio(chars, { company: { 浙商银行: [[0, 3]] }, organization: { 银行企业: [[2, 5]] } }, "f:1").overlapping, 1);
  assert.throws(() => spansToBio(chars, { name: { 叶老桂: [[8, 10]] } }, "train.json:7"), /train\.json:7: label "name" span "叶老桂" at \[8, 10\] does not match the text there/);
  // Offsets count code points, as Python does: an emoji before the span is one character.
  assert.deepEqual(spansToBio([..."😀张三"], { name: { 张三: [[1, 2]] } }, "f:1").tags, ["O", "B-name", "I-name"]);
});

test("JSONL tokens/ner_tags, CLUENER rows and CoNLL text are read with file:line errors; CSV is refused for this task", () => {
  const dir = tempDir();
  const jsonl = join(dir, "a.jsonl");
  writeFileSync(jsonl, [JSON.stringify({ tokens: ["张", "三"], ner_tags: ["B-PER", "I-PER"] }), JSON.stringify({ text: "李四", label: { name: { 李四: [[0, 1]] } } }), ""].join("\n"));
  const r = readTokenRows(jsonl, true);
  assert.deepEqual(r.examples.map((e) => e.tags), [["B-PER", "I-PER"], ["B-name", "I-name"]]);
  assert.deepEqual(resolveTagNames(r.examples, null), ["B-PER", "B-name", "I-PER", "I-name"]);
  assert.deepEqual(resolveTagNames(r.examples.slice(0, 1), NAMES), NAMES, "the model's labels when they cover the data");
  const conll = join(dir, "b.conll");
  writeFileSync(conll, "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n");
  assert.deepEqual(readTokenRows(conll, true).examples.map((e) => [e.words, e.tags, e.line]), [[["EU", "rejects"], ["B-ORG", "O"], 3], [["Peter"], ["B-PER"], 6]]);
  const bad = join(dir, "c.jsonl");
  writeFileSync(bad, JSON.stringify({ tokens: ["a", "b"], ner_tags: ["O"] }) + "\n");
  assert.throws(() => readTokenRows(bad, true), /c\.jsonl:1: 2 tokens but 1 ner_tags/);
  assert.throws(() => readTokenRows(join(dir, "d.csv"), true), /token-classification data is JSONL .* not CSV/);
});

test("byte-level BPE words get run_ner's prefix space (add_prefix_space=True); SentencePiece words their ▁, as HF tokenizes them", () => {
  // The token strings transformers 5.18 printed for tokenizer(words, is_split_into_words=True) on these fixtures
  // (RoBERTa with add_prefix_space=True, as run_ner loads it).
  const words = ["John", "lives", "in", "Paris"];
  const roberta = BertTokenizer.fromDir(join(FIXTURES, "families", "roberta-tiny")).encodeWords(words);
  assert.equal(roberta.tokens.join(" "), "<s> Ġ J o h n Ġli ves Ġin Ġ P ar is </s>");
  const xlmr = BertTokenizer.fromDir(join(FIXTURES, "families", "xlm-roberta-tiny")).encodeWords([...words, "北京"]);
  assert.equal(xlmr.tokens.join(" "), "<s> ▁ J o h n ▁live s ▁in ▁ P ar is ▁ 北京 </s>");
});

test("word pieces' character spans equal HF tokenizers' offsets (WordPiece, byte-level BPE, Unigram)", () => {
  // piece-offsets.json: written by scripts/make-piece-offsets-fixture.py with transformers (return_offsets_mapping)
  const ref = JSON.parse(readFileSync(join(FIXTURES, "ner", "piece-offsets.json"), "utf8")) as { cases: Record<string, { word: string; offsets: [number, number][] }[]> };
  for (const [dir, cases] of Object.entries(ref.cases)) {
    const tk = BertTokenizer.fromDir(join(FIXTURES, dir));
    for (const c of cases) {
      const enc = tk.encodeWords([c.word]);
      const pieces = enc.tokens.filter((_, k) => enc.wordIds[k] !== null);
      assert.deepEqual(tk.pieceSpans(c.word, pieces), c.offsets, `${dir}: ${c.word}`);
    }
  }
});

test("a row longer than --max-length is cut, or with a stride split into overlapping windows of whole words, each labelled in full", () => {
  const tk = BertTokenizer.fromDir(TINY);
  const words = [..."浙商银行企业信贷部叶老桂博士"];
  const tags = words.map((_, i) => (i === 9 ? "B-PER" : i === 10 || i === 11 ? "I-PER" : "O"));
  const e = { words, tags, file: "x", line: 3 };
  const cut = encodeTokenExamples(tk, [e], NAMES, 8);
  assert.deepEqual([cut.encoded.length, cut.truncatedRows, cut.truncatedWords, cut.windowedRows], [1, 1, 8, 0]);
  const win = encodeTokenExamples(tk, [e], NAMES, 8, false, 2);
  assert.deepEqual([win.sources, win.truncatedRows, win.windowedRows, win.windows], [[0, 0, 0], 0, 1, 3]);
  // 6 words per window, the next starting 2 words back: [0, 6), [4, 10), [8, 14)
  const labelled = win.encoded.map((x) => x.tokenLabels!.filter((l) => l >= 0).map((l) => NAMES[l]));
  assert.deepEqual(labelled, [tags.slice(0, 6), tags.slice(4, 10), tags.slice(8, 14)]);
  assert.ok(win.encoded.every((x) => x.inputIds.length <= 8));
  // A row that fits is one window whatever the stride
  assert.equal(encodeTokenExamples(tk, [e], NAMES, 64, false, 2).encoded.length, 1);
});
