/**
 * The RoBERTa (byte-level BPE) and XLM-R (Unigram/Metaspace) tokenizers against the HF tokenizers cases of their
 * fixtures (each fixture's reference/tokenizer/cases.json): every case equal, from tokenizer.json and, for
 * RoBERTa, from vocab.json + merges.txt alone; a SentencePiece-only folder is a clear error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BertTokenizer } from "../../src/tokenizer/index.js";
import { FIXTURES, tempDir } from "../helpers.js";
import { type Case, checkCase } from "./check-case.js";

function checkCases(tk: BertTokenizer, cases: Case[]): void {
  for (const c of cases) checkCase(tk, c);
}

const dir = (name: string): string => join(FIXTURES, "families", name);
const casesOf = (name: string): Case[] => JSON.parse(readFileSync(join(dir(name), "reference", "tokenizer", "cases.json"), "utf8"));

for (const name of ["roberta-tiny", "xlm-roberta-tiny"]) {
  test(`${name}: all ${casesOf(name).length} HF tokenizer cases match (tokenizer.json)`, () => {
    const tk = BertTokenizer.fromDir(dir(name));
    assert.equal(tk.pad, "<pad>");
    assert.equal(tk.padId, 1);
    assert.equal(tk.pairTypeId, 0);
    checkCases(tk, casesOf(name));
  });
}

test("roberta-tiny: the same cases from vocab.json + merges.txt alone (older RoBERTa uploads)", () => {
  const d = tempDir();
  for (const f of ["vocab.json", "merges.txt", "tokenizer_config.json"]) copyFileSync(join(dir("roberta-tiny"), f), join(d, f));
  checkCases(BertTokenizer.fromDir(d), casesOf("roberta-tiny"));
});

test("a folder with only a SentencePiece model names what is missing", () => {
  const d = tempDir();
  writeFileSync(join(d, "sentencepiece.bpe.model"), "not read");
  assert.throws(() => BertTokenizer.fromDir(d), /only a SentencePiece model \(sentencepiece\.bpe\.model\) and weitiao reads tokenizer\.json/);
});
