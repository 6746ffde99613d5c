/**
 * Writes the bundled demo: demo/data/{train,validation}.csv — Chinese reviews composed from phrases this
 * project wrote (balanced 正面/负面) — and demo/model/, a tiny TaskModel with random
 * weights and the bert-base-chinese vocabulary (copied from the test fixtures).
 *
 *   node dist/scripts/make-demo.js
 *
 * Deterministic: the same seed writes the same files.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tsBackend } from "../src/backend/ts.js";
import { initParameter, saveModel } from "../src/io/checkpoint.js";
import { TaskModel } from "../src/model/task-model.js";
import { parseBertConfig } from "../src/model/config.js";
import { Rng } from "../src/util/rng.js";
import { ROOT_DIR } from "./paths.js";

const subjects = [
  "这家餐厅", "这家酒店", "这部手机", "这本书", "这部电影", "这件衣服", "这款耳机", "这次快递", "这家店", "这个外卖",
  "这台电脑", "这双鞋", "客服", "房间", "味道", "屏幕", "电池", "包装", "物流", "质量",
];
const positive = [
  "非常好", "很不错", "太棒了", "特别满意", "物超所值", "值得推荐", "超出预期", "好评", "很喜欢", "质量很好",
  "服务周到", "速度很快", "干净整洁", "性价比高", "下次还来", "五星好评", "做工精细", "味道鲜美", "效果很好", "非常舒服",
];
const negative = [
  "太差了", "很失望", "不推荐", "质量很差", "浪费钱", "再也不买了", "差评", "非常糟糕", "态度恶劣", "速度太慢",
  "又脏又乱", "性价比低", "用了就坏", "味道难吃", "完全不值", "一星差评", "做工粗糙", "退货了", "效果很差", "非常难用",
];
const fillers = ["", "，", "。", "！", "，说实话", "，总的来说", "，真的", "，老实讲"];

function review(rng: Rng, words: string[]): string {
  const pick = <T>(a: T[]): T => a[Math.floor(rng.next() * a.length)]!;
  const first = pick(words);
  let second = pick(words);
  while (second === first) second = pick(words);
  const end = pick(["！", "。", "", "！！"]);
  return rng.next() < 0.5 ? `${pick(subjects)}${first}${pick(fillers)}${second}${end}` : `${pick(subjects)}${pick(fillers)}${first}${end}`;
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function writeData(dir: string): void {
  const rng = new Rng(2024);
  const rows: [string, string][] = [];
  const seen = new Set<string>();
  while (rows.length < 480) {
    const label = rows.length % 2 === 0 ? "正面" : "负面";
    const text = review(rng, label === "正面" ? positive : negative);
    if (seen.has(text)) continue;
    seen.add(text);
    rows.push([text, label]);
  }
  mkdirSync(dir, { recursive: true });
  const write = (name: string, part: [string, string][]): void =>
    writeFileSync(join(dir, name), "text,label\n" + part.map(([t, l]) => `${csvField(t)},${l}`).join("\n") + "\n");
  write("train.csv", rows.slice(0, 400));
  write("validation.csv", rows.slice(400));
}

function writeModel(dir: string): void {
  const fixture = join(ROOT_DIR, "test", "fixtures", "bert-tiny-chinese");
  const config = parseBertConfig({
    architectures: ["TaskModel"], model_type: "bert", vocab_size: 21128, hidden_size: 64,
    num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, hidden_act: "gelu", hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1, max_position_embeddings: 128, type_vocab_size: 2, initializer_range: 0.02,
    layer_norm_eps: 1e-12, pad_token_id: 0, classifier_dropout: null,
    id2label: { 0: "负面", 1: "正面" }, label2id: { 负面: 0, 正面: 1 },
  }, "demo config");
  const model = new TaskModel(config, tsBackend);
  const rng = new Rng(7);
  for (const spec of model.params.specs) initParameter(model, spec.name, rng);
  mkdirSync(dir, { recursive: true });
  saveModel(model, dir, null);
  for (const f of ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(fixture, f), join(dir, f));
}

writeData(join(ROOT_DIR, "demo", "data"));
writeModel(join(ROOT_DIR, "demo", "model"));
console.log("wrote demo/data and demo/model");
