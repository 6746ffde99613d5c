import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BertTokenizer, readVocab, truncatedLengths } from "../../src/tokenizer/index.js";
import { FIXTURES, TINY } from "../helpers.js";
import { type Case, checkCase } from "./check-case.js";

const cases: Case[] = JSON.parse(readFileSync(join(FIXTURES, "reference", "tokenizer", "cases.json"), "utf8"));

const sources = {
  "tokenizer.json": () => BertTokenizer.fromDir(TINY),
  "vocab.txt only": () => BertTokenizer.fromDir(join(FIXTURES, "bert-tiny-chinese-pytorch-bin")),
};

for (const [source, make] of Object.entries(sources)) {
  test(`all ${cases.length} HF tokenizer cases match (${source})`, () => {
    const tk = make();
    let checked = 0;
    for (const c of cases) {
      checkCase(tk, c);
      checked++;
    }
    assert.equal(checked, 50);
  });
}

test("vocab.txt duplicates keep the last index, like HF's load_vocab", () => {
  const vocab = readVocab(join(TINY, "vocab.txt"));
  assert.equal(vocab.get("##s"), 20925);
  assert.equal(vocab.size, 21128 - 53);
  assert.equal(vocab.get(""), 343);
});

test("longest_first truncation follows the Rust crate's rule", () => {
  // Same table as tokenizers' own unit test: max 7, lengths of (short 2, medium 4, long 8).
  assert.deepEqual(truncatedLengths(2, 8, 7, "longest_first"), [2, 5]);
  assert.deepEqual(truncatedLengths(4, 4, 7, "longest_first"), [3, 4]);
  assert.deepEqual(truncatedLengths(8, 4, 7, "longest_first"), [4, 3]);
  assert.deepEqual(truncatedLengths(8, 8, 7, "longest_first"), [3, 4]);
  assert.deepEqual(truncatedLengths(8, 2, 7, "longest_first"), [5, 2]);
  assert.deepEqual(truncatedLengths(8, 4, 7, "only_first"), [3, 4]);
  assert.deepEqual(truncatedLengths(4, 8, 7, "only_second"), [4, 3]);
  assert.throws(() => truncatedLengths(2, 8, 3, "only_first"), /cannot truncate/);
});
