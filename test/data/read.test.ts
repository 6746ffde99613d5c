/** Reading data: every format and every failure gets a test on small files written here. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readRows, readRowsMany } from "../../src/data/read.js";
import { extractExamples, encodeExamples, resolveLabels } from "../../src/data/dataset.js";
import { dataReport } from "../../src/data/report.js";
import { lengthGroupedOrder, stratifiedSplit } from "../../src/data/split.js";
import { parseBertConfig } from "../../src/model/config.js";
import { BertTokenizer } from "../../src/tokenizer/index.js";
import { Rng } from "../../src/util/rng.js";
import { TINY, tempDir } from "../helpers.js";

function file(name: string, content: string | Buffer): string {
  const p = join(tempDir(), name);
  writeFileSync(p, content);
  return p;
}
const cols = { textColumn: "text", labelColumn: "label" };

test("CSV: RFC 4180 quoting, embedded newlines and quotes, BOM, CRLF; line numbers follow the file", () => {
  const p = file("a.csv", "\uFEFFtext,label\r\n\"好,很好\",正面\r\n\"第一行\n第二行\",负面\r\n\"他说\"\"不错\"\"\",正面\r\n");
  const rows = readRows(p);
  assert.deepEqual(rows.map((r) => r.fields.text), ["好,很好", "第一行\n第二行", "他说\"不错\""]);
  assert.deepEqual(rows.map((r) => r.line), [2, 3, 5]);
  assert.deepEqual(Object.keys(rows[0]!.fields), ["text", "label"], "BOM stripped from the first header");
});

test("TSV, JSONL, --no-header, folders and comma lists", () => {
  assert.deepEqual(readRows(file("a.tsv", "text\tlabel\n好\t1\n")).map((r) => r.fields), [{ text: "好", label: "1" }]);
  const jl = readRows(file("a.jsonl", '{"text":"好","label":1}\n\n{"text":"差","label":0,"extra":true}\n'));
  assert.deepEqual(jl.map((r) => [r.fields.text, r.line]), [["好", 1], ["差", 3]]);
  assert.deepEqual(readRows(file("n.csv", "好,1\n差,0\n"), { noHeader: true }).map((r) => r.fields), [{ 0: "好", 1: "1" }, { 0: "差", 1: "0" }]);
  const dir = tempDir();
  mkdirSync(join(dir, "data"));
  writeFileSync(join(dir, "data", "b.csv"), "text,label\n二,0\n");
  writeFileSync(join(dir, "data", "a.csv"), "text,label\n一,1\n");
  writeFileSync(join(dir, "data", "notes.txt"), "ignored");
  assert.deepEqual(readRowsMany(join(dir, "data")).map((r) => r.fields.text), ["一", "二"]);
  assert.deepEqual(readRowsMany(`${join(dir, "data", "b.csv")},${join(dir, "data", "a.csv")}`).map((r) => r.fields.text), ["二", "一"]);
});

const failures: [string, string | Buffer, RegExp][] = [
  ["malformed quoting", 'text,label\n"好,1\n', /a\.bad:\d+: malformed CSV/],
  ["too few columns", "text,label\n好,1\n差\n", /a\.bad:3: expected 2 columns \(text, label\), found 1/],
  ["empty file", "", /a\.bad: file is empty/],
  ["header only", "text,label\n", /has a header but no data rows/],
  ["binary file", Buffer.from([0x50, 0x4b, 3, 4, 0, 0, 1, 2]), /looks like a binary file/],
  ["UTF-16", Buffer.from("\uFEFFtext,label\n", "utf16le"), /UTF-16 text is not supported/],
  ["GBK", Buffer.from([0x74, 0x65, 0x78, 0x74, 0x0a, 0xba, 0xc3, 0x0a]), /a\.bad:2: not valid UTF-8 \(GBK\/GB18030 export\?\).*iconv/],
  ["duplicate header", "text,text\n好,1\n", /a\.bad:1: duplicate column name "text"/],
];
for (const [name, content, pattern] of failures) {
  test(`bad input: ${name} → one line naming file:line`, () => {
    const p = file("a.bad", content);
    assert.throws(() => readRows(p), (e: Error) => pattern.test(e.message) && !e.message.includes("\n"));
  });
}

test("bad input: invalid JSONL line and a non-object line name their line", () => {
  assert.throws(() => readRows(file("a.jsonl", '{"text":"好"}\n{oops\n')), /a\.jsonl:2: invalid JSON/);
  assert.throws(() => readRows(file("b.jsonl", '{"text":"好"}\n[1,2]\n')), /b\.jsonl:2: each line must be a JSON object/);
});

test("hygiene report: skipped rows with reasons, duplicates kept and reported, length percentiles, label balance", () => {
  const p = file("h.csv", "text,label\n好,正面\n,负面\n差,\n好,正面\n很差很差很差,负面\n");
  const { examples, skipped } = extractExamples(readRows(p), cols, true);
  assert.equal(examples.length, 3, "duplicates are not removed");
  assert.deepEqual(skipped.map((s) => [s.line, s.reason]), [[3, "empty text"], [4, "missing label"]]);
  const config = parseBertConfig(JSON.parse(JSON.stringify({ model_type: "bert", id2label: { 0: "负面", 1: "正面" } })), "x");
  const labels = resolveLabels(examples, config);
  const tk = BertTokenizer.fromDir(TINY);
  const ids = Int32Array.from(examples, (e) => labels.names.indexOf(e.rawLabel!));
  const enc = encodeExamples(tk, examples, ids, 4);
  const r = dataReport(examples, skipped, enc.encoded, enc.stats.truncated, labels.names);
  assert.equal(r.rows, 5);
  assert.deepEqual(r.skipped, { "empty text": [`${p}:3`], "missing label": [`${p}:4`] });
  assert.equal(r.duplicates.count, 1);
  assert.match(r.duplicates.examples[0]!, /h\.csv:5 repeats .*h\.csv:2/);
  assert.deepEqual(r.lengths, { p50: 3, p90: 4, p99: 4, max: 4 });
  assert.equal(r.truncated, 1);
  assert.deepEqual(r.labels, { 负面: 1, 正面: 2 });
});

test("stratified validation split: per-label proportions, seeded, disjoint and complete", () => {
  const labels = Int32Array.from({ length: 100 }, (_, i) => (i < 80 ? 0 : 1));
  const a = stratifiedSplit(labels, 0.2, 1);
  assert.equal(a.validation.filter((i) => labels[i] === 0).length, 16);
  assert.equal(a.validation.filter((i) => labels[i] === 1).length, 4);
  assert.deepEqual([...a.train, ...a.validation].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.deepEqual(stratifiedSplit(labels, 0.2, 1), a, "same seed, same split");
  assert.notDeepEqual(stratifiedSplit(labels, 0.2, 2).validation, a.validation);
});

test("group-by-length: a permutation whose batches hold similar lengths", () => {
  const lengths = Array.from({ length: 64 }, (_, i) => (i * 37) % 64);
  const order = lengthGroupedOrder(lengths, 8, new Rng(3));
  assert.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: 64 }, (_, i) => i));
  for (let i = 1; i < order.length; i++) assert.ok(lengths[order[i]!]! <= lengths[order[i - 1]!]!, "sorted within the mega-batch");
});
