/**
 * Masked-LM data (data/mlm.ts) as run_mlm and its collators make it: masking rates within binomial bounds, special
 * tokens never chosen (and the check failing when they are), fresh masks per step from the seed, group_texts and
 * --line-by-line by hand, len(tokenizer), and whole-word masking from Chinese reference ids.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { chineseWordStarts, groupTexts, lineExamples, loadSegmenter, maskExample, type MaskingSpec, maskingSpec, maskRng, type MlmExample } from "../../src/data/mlm.js";
import { BertTokenizer } from "../../src/tokenizer/index.js";
import { Rng } from "../../src/util/rng.js";
import { FIXTURES } from "../helpers.js";

const tokenizer = BertTokenizer.fromDir(join(FIXTURES, "mlm", "bert-tiny-chinese-mlm", "model"));
const spec = maskingSpec(tokenizer, 0.15, false);

/** Rows of [CLS] + 126 ordinary ids + [SEP], as group_texts blocks look. */
function rows(n: number): MlmExample[] {
  return Array.from({ length: n }, (_, r) => {
    const ids = [101, ...Array.from({ length: 126 }, (_, i) => 672 + ((r * 131 + i * 7) % 7000)), 102];
    return { inputIds: ids, tokenTypeIds: ids.map(() => 0), label: -1 };
  });
}

/** Counts of what masking did, and whether it touched a special token. */
function tally(examples: MlmExample[], s: MaskingSpec, rng: Rng) {
  let candidates = 0;
  let chosen = 0;
  let masked = 0;
  let random = 0;
  let kept = 0;
  let specialChosen = 0;
  for (const e of examples) {
    const m = maskExample(e, s, rng);
    e.inputIds.forEach((id, i) => {
      const special = tokenizer.specialIds.has(id);
      if (!special) candidates++;
      if (m.tokenLabels![i]! < 0) {
        assert.equal(m.inputIds[i], id, "an unchosen token is unchanged");
        return;
      }
      assert.equal(m.tokenLabels![i], id, "the label is the original id");
      if (special) specialChosen++;
      chosen++;
      if (m.inputIds[i] === s.maskId) masked++;
      else if (m.inputIds[i] === id) kept++;
      else random++;
      assert.ok(m.inputIds[i]! < s.vocabLength);
    });
  }
  return { candidates, chosen, masked, random, kept, specialChosen };
}

/** |x − n·p| within 5 binomial standard deviations (a false alarm about once in 3.5 million runs). */
function withinBinomial(x: number, n: number, p: number, what: string): void {
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(x - n * p) < 5 * sd, `${what}: ${x} of ${n}, expected ${(n * p).toFixed(1)} ± ${(5 * sd).toFixed(1)}`);
}

test("masking: 15% of the non-special tokens, of them 80% [MASK], 10% random, 10% kept; special tokens never", () => {
  const t = tally(rows(400), spec, new Rng(7));
  assert.equal(t.specialChosen, 0);
  withinBinomial(t.chosen, t.candidates, 0.15, "chosen");
  withinBinomial(t.masked, t.chosen, 0.8, "[MASK]");
  withinBinomial(t.random, t.chosen, 0.1, "random");
  withinBinomial(t.kept, t.chosen, 0.1, "kept");
  // Mutation: a masker that may choose special tokens is caught by this very check
  const careless = tally(rows(400), { ...spec, specialIds: new Set() }, new Rng(7));
  assert.ok(careless.specialChosen > 0, "masking special tokens fails the check");
});

test("masking: padding is never chosen, and --mlm-probability sets the rate", () => {
  const e: MlmExample = { inputIds: [101, 2769, 812, 102, 0, 0], tokenTypeIds: [0, 0, 0, 0, 0, 0], attentionMask: [1, 1, 1, 1, 0, 0], label: -1 };
  const rng = new Rng(3);
  for (let i = 0; i < 200; i++) assert.deepEqual(maskExample(e, { ...spec, probability: 0.9 }, rng).tokenLabels!.slice(3), [-100, -100, -100]);
  const t = tally(rows(200), { ...spec, probability: 0.4 }, new Rng(11));
  withinBinomial(t.chosen, t.candidates, 0.4, "chosen at 0.4");
});

test("masking: the same seed, step and micro-batch give the same masks; another step other ones", () => {
  const e = rows(1)[0]!;
  const at = (step: number, micro: number) => maskExample(e, spec, maskRng(42, step, micro)).tokenLabels!;
  assert.deepEqual(at(5, 0), at(5, 0));
  assert.notDeepEqual(at(5, 0), at(6, 0));
  assert.notDeepEqual(at(5, 0), at(5, 1));
  assert.notDeepEqual(maskExample(e, spec, maskRng(43, 5, 0)).tokenLabels, at(5, 0));
});

test("len(tokenizer) counts the distinct tokens as HF does (21075, not vocab_size 21128); random ids stay below it", () => {
  assert.equal(tokenizer.length, 21075);
  assert.equal(spec.vocabLength, 21075);
  assert.equal(spec.maskId, 103);
  for (const id of [0, 100, 101, 102, 103]) assert.ok(spec.specialIds.has(id), `special ${id}`);
});

test("group_texts: texts (each with [CLS]/[SEP]) concatenated, cut into blocks, the remainder dropped, per 1000 texts", () => {
  const texts = [{ ids: [101, 1, 2, 102] }, { ids: [101, 3, 102] }, { ids: [101, 4, 5, 6, 102] }];
  assert.deepEqual(groupTexts(texts, 5).map((b) => b.inputIds), [[101, 1, 2, 102, 101], [3, 102, 101, 4, 5]]);
  assert.deepEqual(groupTexts(texts, 20), []);
  // datasets.map(batched=True) runs group_texts per 1000 rows: each chunk drops its own remainder
  assert.deepEqual(groupTexts(texts, 3, 2).map((b) => b.inputIds), [[101, 1, 2], [102, 101, 3], [101, 4, 5]]);
});

test("--line-by-line: one example per text, cut at max length with its [SEP] kept", () => {
  const out = lineExamples([{ ids: [101, 1, 2, 3, 4, 102] }, { ids: [101, 7, 102] }], 4);
  assert.deepEqual(out.map((e) => e.inputIds), [[101, 1, 2, 102], [101, 7, 102]]);
});

test("whole-word masking: Chinese reference ids from jieba's words, ## pieces join; a chosen word is masked whole", async () => {
  const text = "北京是中国的首都";
  const enc = tokenizer.encode(text);
  const segment = await loadSegmenter();
  assert.deepEqual(segment(text), ["北京", "是", "中国", "的", "首都"]);
  const starts = chineseWordStarts(enc.tokens, segment(text));
  assert.deepEqual(enc.tokens, ["[CLS]", "北", "京", "是", "中", "国", "的", "首", "都", "[SEP]"]);
  assert.deepEqual(starts, [1, 1, 0, 1, 1, 0, 1, 1, 0, 1]);
  // the longest run in the word set wins; ## pieces join whatever precedes them; non-Chinese tokens never join
  assert.deepEqual(chineseWordStarts(["[CLS]", "中", "华", "人", "民", "play", "##ing", "[SEP]"], ["中华", "中华人民", "人民"]), [1, 1, 0, 0, 0, 1, 0, 1]);
  const wwm = { ...spec, wholeWord: true };
  const e: MlmExample = { inputIds: enc.inputIds, tokenTypeIds: enc.tokenTypeIds, label: -1, wordStarts: starts };
  const words = [[1, 2], [3], [4, 5], [6], [7, 8]];
  let chosenTokens = 0;
  for (let s = 0; s < 300; s++) {
    const labels = maskExample(e, wwm, maskRng(1, s, 0)).tokenLabels!;
    const chosen = labels.flatMap((l, i) => (l >= 0 ? [i] : []));
    for (const w of words) assert.ok(w.every((i) => chosen.includes(i)) || w.every((i) => !chosen.includes(i)), `word ${w} whole: ${chosen}`);
    assert.ok(!chosen.includes(0) && !chosen.includes(9), "no special token");
    // num_to_predict = max(1, round(10 · 0.15)) = 2 (the special tokens count in HF's len): whole words that fit
    assert.ok(chosen.length >= 1 && chosen.length <= 2, `${chosen.length} chosen`);
    chosenTokens += chosen.length;
  }
  assert.ok(chosenTokens > 300, "words of two characters are chosen too");
});
