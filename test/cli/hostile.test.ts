/**
 * Crafted model folders, hostile data and faults, run through the built CLI from fresh temp folders (issue 16):
 * each ends in one line naming the problem, exit 1, no stack trace and nothing half-written.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadModelFromDir, saveModel } from "../../src/io/checkpoint.js";
import { readSafetensors } from "../../src/io/safetensors.js";
import { TINY, tempDir } from "../helpers.js";
import { assertOneLineError, craftModel, run } from "./cli-helpers.js";
import { BACKENDS } from "../backends.js";

function firstRows(t: { shape: number[]; data: Float32Array }, rows: number): { shape: number[]; data: Float32Array } {
  const cols = t.shape[1]!;
  return { shape: [rows, cols], data: t.data.slice(0, rows * cols) };
}

function csv(dir: string, rows: string[], header = "text,label"): string {
  const file = join(dir, "train.csv");
  writeFileSync(file, [header, ...rows].join("\n") + "\n");
  return file;
}

const REVIEWS = ["这部电影太好看了,1", "烂片，浪费时间。,0", "演员很棒,1", "剧情无聊,0"];

for (const backend of BACKENDS) {
  test(`[${backend.name}] a vocab_size smaller than the tokenizer is refused at load, never read out of bounds`, () => {
    const model = craftModel({ vocab_size: 100 }, (n, t) => (n.endsWith("word_embeddings.weight") ? firstRows(t, 100) : t));
    const r = run(["predict", "--model", model, "--text", "这部电影太好看了", "--backend", backend.name]);
    assertOneLineError(r, /tokenizer has ids up to 21127 but config\.json's vocab_size is 100/);
    const dir = tempDir();
    const t = run(["train", "--model", model, "--train-file", csv(dir, REVIEWS), "--output-dir", join(dir, "out"), "--backend", backend.name]);
    assertOneLineError(t, /vocab_size is 100/);
    assert.equal(existsSync(join(dir, "out")), false);
  });

  test(`[${backend.name}] text pairs with type_vocab_size 1 are refused naming the row (train) and the table (predict)`, () => {
    const model = craftModel({ type_vocab_size: 1 }, (n, t) => (n.endsWith("token_type_embeddings.weight") ? firstRows(t, 1) : t));
    const dir = tempDir();
    const file = csv(dir, ["好看,精彩,1", "难看,无聊,0"], "text,text_pair,label");
    const t = run(["train", "--model", model, "--train-file", file, "--text-pair-column", "text_pair", "--output-dir", join(dir, "out"), "--backend", backend.name]);
    assertOneLineError(t, /train\.csv:2: this row has a text pair but the model's type_vocab_size is 1/);
    assert.equal(existsSync(join(dir, "out")), false);
    const input = join(dir, "pairs.jsonl");
    writeFileSync(input, JSON.stringify({ text: "好看", text_pair: "精彩" }) + "\n");
    const p = run(["predict", "--model", model, "--input", input, "--backend", backend.name]);
    assertOneLineError(p, /token type id 1 is beyond the token type table \(type_vocab_size 1 in config\.json\): this model cannot take text pairs/);
    // Single texts still work on that model.
    const ok = run(["predict", "--model", model, "--text", "好看", "--backend", backend.name]);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test(`[${backend.name}] the backend's gathers refuse ids outside their tables (defence in depth)`, () => {
    const H = 4;
    const word = new Float32Array(10 * H), pos = new Float32Array(8 * H), type = new Float32Array(2 * H);
    const out = new Float32Array(2 * H);
    const ok = Int32Array.of(1, 2), zero = Int32Array.of(0, 0);
    backend.embeddingForward(ok, zero, zero, word, pos, type, out, 2, H);
    for (const [ids, posIds, typeIds, what] of [
      [Int32Array.of(1, 10), zero, zero, /word/],
      [Int32Array.of(-1, 0), zero, zero, /word/],
      [ok, Int32Array.of(0, 8), zero, /position/],
      [ok, zero, Int32Array.of(0, 2), /token type/],
    ] as const) {
      assert.throws(() => backend.embeddingForward(ids, posIds, typeIds, word, pos, type, out, 2, H), what);
    }
    assert.throws(() => backend.embeddingBackward(Int32Array.of(0, 10), out, word, 2, H, 0), /outside/);
    backend.embeddingBackward(Int32Array.of(0, 9), out, word, 2, H, 0);
  });
}

test("config.json fields that are not sizes fail at load with the field named", () => {
  const dir = tempDir();
  const file = csv(dir, REVIEWS);
  for (const [field, value, pattern] of [
    ["num_hidden_layers", 2.5, /num_hidden_layers must be an integer from 1 to 256 \(got 2\.5\)/],
    ["vocab_size", 2e9, /vocab_size must be an integer from 1 to 4000000/],
    ["hidden_dropout_prob", 1.5, /hidden_dropout_prob must be a probability/],
    ["num_attention_heads", 0, /num_attention_heads must be an integer/],
    ["num_labels", 1e12, /num_labels must be an integer/],
    ["pad_token_id", 30000, /pad_token_id 30000 is beyond vocab_size/],
  ] as const) {
    const model = craftModel({ [field]: value });
    const r = run(["train", "--model", model, "--train-file", file, "--output-dir", join(dir, "out")]);
    assertOneLineError(r, pattern);
    assert.equal(existsSync(join(dir, "out")), false);
  }
});

test("a training file with a single class is refused with a hint", () => {
  const dir = tempDir();
  const model = craftModel({ id2label: { "0": "LABEL_0", "1": "LABEL_1" }, label2id: { LABEL_0: 0, LABEL_1: 1 } });
  const r = run(["train", "--model", model, "--train-file", csv(dir, ["好看,good", "精彩,good"]), "--output-dir", join(dir, "out")]);
  assertOneLineError(r, /every row has the label "good": single-label classification needs at least two classes/);
  assert.deepEqual(readdirSync(dir), ["train.csv"]);
});

test("a model file that is a symlink out of the folder is refused, never read or copied; links inside are followed", () => {
  const dir = tempDir();
  const secret = join(tempDir(), "shadow");
  writeFileSync(secret, "root:$6$secret-hash:19000:0:99999:7:::\n");
  const model = craftModel();
  rmSync(join(model, "tokenizer.json"));
  rmSync(join(model, "vocab.txt"));
  symlinkSync(secret, join(model, "vocab.txt"));
  const file = csv(dir, REVIEWS);
  const t = run(["train", "--model", model, "--train-file", file, "--output-dir", join(dir, "out"), "--epochs", "1"]);
  assertOneLineError(t, /vocab\.txt: a symlink to .*shadow, outside the model folder: refused/);
  assert.equal(existsSync(join(dir, "out")), false);
  assertOneLineError(run(["predict", "--model", model, "--text", "好看"]), /outside the model folder: refused/);
  // config.json and the weights are guarded the same way.
  const other = craftModel();
  rmSync(join(other, "config.json"));
  symlinkSync(secret, join(other, "config.json"));
  assertOneLineError(run(["predict", "--model", other, "--text", "好看"]), /config\.json: a symlink to .*outside the model folder/);
  // A link that stays inside the folder is an ordinary file.
  rmSync(join(model, "vocab.txt"));
  mkdirSync(join(model, "files"));
  copyFileSync(join(TINY, "vocab.txt"), join(model, "files", "vocab.txt"));
  symlinkSync(join("files", "vocab.txt"), join(model, "vocab.txt"));
  const ok = run(["train", "--model", model, "--train-file", file, "--output-dir", join(dir, "out"), "--epochs", "1", "--max-length", "16"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(lstatSync(join(dir, "out", "vocab.txt")).isSymbolicLink(), false);
  assert.equal(readFileSync(join(dir, "out", "vocab.txt"), "utf8"), readFileSync(join(TINY, "vocab.txt"), "utf8"));
});

test("JSONL objects, arrays or numbers where text is expected are a file:line error (train, predict, stdin); label arrays are multi-label", () => {
  const dir = tempDir();
  const rows = (bad: Record<string, unknown>): string =>
    [{ text: "好看", label: "pos" }, bad, { text: "难看", label: "neg" }].map((r) => JSON.stringify(r)).join("\n") + "\n";
  for (const [bad, pattern] of [
    [{ text: { a: 1 }, label: "pos" }, /train\.jsonl:2: field "text" is an object, not text/],
    [{ text: ["好", "看"], label: "pos" }, /train\.jsonl:2: field "text" is an array, not text/],
    [{ text: 42, label: "pos" }, /train\.jsonl:2: field "text" is a number \(42\), not text/],
    [{ text: "好看", label: { x: 1 } }, /train\.jsonl:2: field "label" is an object, not a label/],
  ] as const) {
    writeFileSync(join(dir, "train.jsonl"), rows(bad));
    const r = run(["train", "--model", TINY, "--train-file", join(dir, "train.jsonl"), "--output-dir", join(dir, "out")]);
    assertOneLineError(r, pattern);
    assert.equal(existsSync(join(dir, "out")), false);
  }
  writeFileSync(join(dir, "pairs.jsonl"), JSON.stringify({ text: "好看", text_pair: 3 }) + "\n");
  assertOneLineError(run(["predict", "--model", TINY, "--input", join(dir, "pairs.jsonl")]), /pairs\.jsonl:1: field "text_pair" is a number \(3\), not text/);
  assertOneLineError(run(["predict", "--model", TINY, "--input", "-"], { input: JSON.stringify({ text: "好看", text_pair: {} }) + "\n" }), /stdin:1: field "text_pair" is not text/);
  // A label written as a JSON array trains as multi-label.
  writeFileSync(join(dir, "multi.jsonl"), [
    { text: "球赛精彩", label: ["体育"] }, { text: "明星球赛", label: ["体育", "娱乐"] }, { text: "新电影", label: ["娱乐"] },
  ].map((r) => JSON.stringify(r)).join("\n") + "\n");
  const m = run(["train", "--model", TINY, "--train-file", join(dir, "multi.jsonl"), "--output-dir", join(dir, "multi"), "--epochs", "1", "--max-length", "16"]);
  assert.equal(m.code, 0, m.stderr);
  const cfg = JSON.parse(readFileSync(join(dir, "multi", "config.json"), "utf8"));
  assert.equal(cfg.problem_type, "multi_label_classification");
  assert.deepEqual(Object.values(cfg.id2label).sort(), ["娱乐", "体育"].sort());
});

test("predict and evaluate refuse a head that does not match config.json or is missing, and weights holding NaN", () => {
  const dir = tempDir();
  const labelled = join(dir, "dev.csv");
  writeFileSync(labelled, "text,label\n好看,正面\n难看,负面\n");
  const three = craftModel({ id2label: { "0": "a", "1": "b", "2": "c" }, label2id: { a: 0, b: 1, c: 2 } });
  for (const cmd of [["predict", "--text", "好看"], ["evaluate", "--input", labelled]]) {
    assertOneLineError(run([cmd[0]!, "--model", three, ...cmd.slice(1)]), /classifier\.(weight|bias) has shape \[2(,32)?\] .* config\.json's id2label has 3 labels: the head does not match the config/);
  }
  const headless = craftModel({}, (n, t) => (n.startsWith("classifier.") ? null : t));
  assertOneLineError(run(["predict", "--model", headless, "--text", "好看"]), /lacks classifier\.weight, classifier\.bias: predicting would use random weights/);
  // Training from a headless model is what fine-tuning is: it still works.
  const t = run(["train", "--model", headless, "--train-file", csv(dir, REVIEWS), "--output-dir", join(dir, "out"), "--epochs", "1", "--max-length", "16"]);
  assert.equal(t.code, 0, t.stderr);
  const nan = craftModel({}, (n, t) => {
    if (n !== "bert.encoder.layer.1.output.dense.weight") return t;
    const data = Float32Array.from(t.data);
    data[5] = NaN;
    return { shape: t.shape, data };
  });
  assertOneLineError(run(["predict", "--model", nan, "--text", "好看"]), /model\.safetensors is broken: bert\.encoder\.layer\.1\.output\.dense\.weight holds non-finite values/);
  assertOneLineError(run(["train", "--model", nan, "--train-file", csv(dir, REVIEWS), "--output-dir", join(dir, "nan-out")]), /holds non-finite values/);
  assert.equal(existsSync(join(dir, "nan-out")), false);
});

test("a non-finite loss or update stops training with the step named; the last good checkpoint stays, nothing NaN is saved", () => {
  const dir = tempDir();
  const file = csv(dir, REVIEWS);
  const base = ["train", "--model", TINY, "--train-file", file, "--batch-size", "2", "--epochs", "3", "--max-length", "16", "--learning-rate", "1e38"];
  // Without checkpoints the second step sees the first's overflow.
  const r = run([...base, "--output-dir", join(dir, "a")]);
  assertOneLineError(r, /step 2 of 6: the loss is NaN and the gradient norm NaN: training stopped before this step's update \(lower --learning-rate, now 1e\+38/);
  assert.equal(existsSync(join(dir, "a")), false);
  // With warmup the first updates are small: checkpoints 1 and 2 are written, step 3 meets the overflow and stops.
  const out = join(dir, "b");
  const c = run([...base, "--output-dir", out, "--save-steps", "1", "--warmup-steps", "4"]);
  assertOneLineError(c, /step 3 of 6: the loss is NaN/);
  assert.deepEqual(readdirSync(out).sort(), ["checkpoint-1", "checkpoint-2"]);
  for (const [, t] of readSafetensors(join(out, "checkpoint-1", "model.safetensors"))) assert.ok(t.data.every(Number.isFinite));
});

test("saving refuses NaN weights and leaves neither the folder nor its temporary", () => {
  const { model } = loadModelFromDir(TINY, { backend: BACKENDS[0]! });
  model.params.value("classifier.bias")[1] = Infinity;
  const dir = tempDir();
  assert.throws(() => saveModel(model, join(dir, "out"), TINY), /refusing to save the model: classifier\.bias holds non-finite values/);
  assert.deepEqual(readdirSync(dir), []);
});

test("predict and tokenize read JSONL with text_pair on some rows and not others; an empty row still gets its output line", () => {
  const dir = tempDir();
  const input = join(dir, "mixed.jsonl");
  writeFileSync(input, [{ text: "好看" }, { text: "难看", text_pair: "无聊" }, { text: "" }, { text: "精彩", text_pair: null }].map((r) => JSON.stringify(r)).join("\n") + "\n");
  const t = run(["tokenize", "--model", TINY, "--input", input]);
  assert.equal(t.code, 0, t.stderr);
  const enc = t.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(enc.length, 4);
  assert.deepEqual(enc[0].token_type_ids, [0, 0, 0, 0]);
  assert.deepEqual(enc[1].tokens, ["[CLS]", "难", "看", "[SEP]", "无", "聊", "[SEP]"], "the pair of row 2 is encoded");
  assert.deepEqual(enc[1].token_type_ids, [0, 0, 0, 0, 1, 1, 1]);
  assert.deepEqual(enc[2].tokens, ["[CLS]", "[SEP]"]);
  assert.deepEqual(enc[3].token_type_ids, [0, 0, 0, 0], "text_pair null is a single text");
  const out = join(dir, "preds.jsonl");
  const p = run(["predict", "--model", TINY, "--input", input, "--output", out]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(readFileSync(out, "utf8").trim().split("\n").length, 4, "one line per input row");
  assert.match(p.stderr, /notice: 1 row\(s\) of .*mixed\.jsonl have empty text \(first: line 3\)/);
  // In CSV a named pair column must be there.
  writeFileSync(join(dir, "x.csv"), "text\n好看\n");
  assertOneLineError(run(["predict", "--model", TINY, "--input", join(dir, "x.csv"), "--text-pair-column", "pair"]), /x\.csv:2: no column "pair"/);
});
