/**
 * Tokenizer and data-loading throughput (a script, not a test): 10,000 Chinese reviews written to a CSV, then
 *   1. read + parse + tokenize through weitiao's pipeline (readRows → extractExamples → encodeExamples),
 *   2. tokenize the same texts with weitiao's BertTokenizer alone,
 *   3. the same with HF's Rust tokenizers through the official npm binding, when installed
 *      (`npm install --no-save tokenizers`), checking that both produce the same ids.
 *
 *   node dist/scripts/bench-tokenizer.js
 */
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeExamples, extractExamples } from "../src/data/dataset.js";
import { readRows } from "../src/data/read.js";
import { BertTokenizer } from "../src/tokenizer/index.js";
import { Rng } from "../src/util/rng.js";
import { ROOT_DIR } from "./paths.js";

const MODEL = join(ROOT_DIR, "demo", "model");
const parts = ["这家餐厅", "服务态度", "物流速度", "手机电池", "酒店房间", "非常好", "太差了", "还可以", "不推荐", "值得购买", "，", "。", "！", "iPhone 15", "性价比", "质量"];
const rng = new Rng(1);
const texts = Array.from({ length: 10000 }, () => Array.from({ length: 6 + Math.floor(rng.next() * 20) }, () => parts[Math.floor(rng.next() * parts.length)]).join(""));
const dir = mkdtempSync(join(tmpdir(), "weitiao-tok-"));
process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
const csv = join(dir, "reviews.csv");
writeFileSync(csv, "text,label\n" + texts.map((t, i) => `"${t}",${i % 2}`).join("\n") + "\n");

const time = <T>(fn: () => T): [T, number] => {
  const t = process.hrtime.bigint();
  const r = fn();
  return [r, Number(process.hrtime.bigint() - t) / 1e9];
};

const tk = BertTokenizer.fromDir(MODEL);
const [, loadS] = time(() => {
  const { examples } = extractExamples(readRows(csv), { textColumn: "text", labelColumn: "label" }, true);
  return encodeExamples(tk, examples, null, 128);
});
console.log(JSON.stringify({ name: "read_parse_tokenize_10k_csv", seconds: loadS, rows_per_s: 10000 / loadS }));
const [ours, oursS] = time(() => texts.map((t) => tk.encode(t, null, { maxLength: 128 }).inputIds));
console.log(JSON.stringify({ name: "weitiao_tokenize_10k", seconds: oursS, rows_per_s: 10000 / oursS }));

try {
  const { Tokenizer } = createRequire(import.meta.url)("tokenizers") as { Tokenizer: { fromFile(p: string): { encode(t: string): Promise<{ getIds(): number[] }> } } };
  const hf = Tokenizer.fromFile(join(MODEL, "tokenizer.json"));
  const t0 = process.hrtime.bigint();
  const theirs: number[][] = [];
  for (const t of texts) theirs.push((await hf.encode(t)).getIds());
  const hfS = Number(process.hrtime.bigint() - t0) / 1e9;
  const same = theirs.every((ids, i) => ids.length === ours[i]!.length && ids.every((v, j) => v === ours[i]![j]));
  console.log(JSON.stringify({ name: "hf_tokenizers_rust_10k", seconds: hfS, rows_per_s: 10000 / hfS, ratio_ours_vs_hf: hfS / oursS, identical_ids: same }));
} catch (e) {
  console.log(JSON.stringify({ name: "hf_tokenizers_rust_10k", skipped: `npm install --no-save tokenizers to compare (${(e as Error).message.split("\n")[0]})` }));
}
