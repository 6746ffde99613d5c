/**
 * `weitiao train` end to end: the real-tokens 12-step trajectories run through the CLI itself on a 48-row CSV
 * that holds the manifest's batches in order; bad input fails with one line, exit ≠ 0 and no output folder;
 * `predict` on the saved folder reproduces the trained model's logits.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors } from "../../src/io/safetensors.js";
import { CLI, REAL, TINY, tempDir, relErr } from "../helpers.js";
import { checkTrajectory } from "../train/trajectory-check.js";
import { stepLogs } from "../helpers.js";
import { BACKENDS } from "../backends.js";

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const manifest = JSON.parse(readFileSync(join(REAL, "manifest.json"), "utf8"));

function trajectoryCsv(dir: string): string {
  const file = join(dir, "trajectory.csv");
  const ex = manifest.examples as { text: string; label: number }[];
  const rows = (manifest.trajectory.batches as number[][]).flat().map((i) => `"${ex[i]!.text.replace(/"/g, '""')}",${ex[i]!.label}`);
  writeFileSync(file, "text,label\n" + rows.join("\n") + "\n");
  return file;
}

const STRATEGY_FLAGS: Record<string, string[]> = {
  full: ["--strategy", "full"],
  head_only: ["--strategy", "head"],
  top_layer: ["--strategy", "top-k", "--top-k", "1"],
};

for (const backend of BACKENDS) for (const [refName, flags] of Object.entries(STRATEGY_FLAGS)) {
  test(`[${backend.name}] weitiao train reproduces the real-tokens ${refName} trajectory`, () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const r = run([
      "train", "--model", TINY, "--train-file", trajectoryCsv(dir), "--output-dir", out, "--no-shuffle", "--dropout", "0",
      "--batch-size", "4", "--epochs", "1", "--warmup-steps", "3", "--weight-decay", "0.01", "--max-grad-norm", "1.0",
      "--logging-steps", "1", "--max-length", "32", "--learning-rate", String(manifest.trajectory.results[refName].base_lr),
      "--backend", backend.name, ...flags,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Epoch 1 \| Loss: \d\.\d{4} \| Accuracy: \d\.\d{4}$/m);
    const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
    const saved = readSafetensors(join(out, "model.safetensors"));
    checkTrajectory(REAL, refName, stepLogs(state.log_history), new Map([...saved].map(([k, v]) => [k, v.data])));
  });
}

test("predict on the saved folder gives the trained model's logits; config carries the labels", async () => {
  const dir = tempDir();
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", trajectoryCsv(dir), "--output-dir", out, "--epochs", "1",
    "--batch-size", "8", "--max-length", "32", "--learning-rate", "1e-3", "--seed", "3"]);
  assert.equal(r.code, 0, r.stderr);
  const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.deepEqual(config.id2label, { 0: "负面", 1: "正面" }); // integer labels keep the config's names
  assert.equal(config.problem_type, "single_label_classification");
  assert.deepEqual(config.architectures, ["BertForSequenceClassification"]);
  for (const f of ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "training_args.json"]) assert.ok(existsSync(join(out, f)), f);

  const texts = (manifest.examples as { text: string }[]).slice(0, 4).map((e) => e.text);
  const p = run(["predict", "--model", out, "--text", ...texts]);
  assert.equal(p.code, 0, p.stderr);
  const preds = p.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(preds.length, 4);

  // The same logits from the in-memory model that was saved: reload via the API and compare.
  const { loadModel, predict } = await import("../../src/api/predict.js");
  const loaded = await loadModel(out, { backend: "typescript" });
  const direct = predict(loaded, texts.map((text) => ({ text })));
  preds.forEach((pr, i) => {
    assert.ok(relErr(pr.logits, direct[i]!.logits) < 1e-6);
    assert.equal(pr.label, direct[i]!.label);
    assert.ok(Math.abs(pr.probabilities["负面"] + pr.probabilities["正面"] - 1) < 1e-6);
  });
});

function badInput(name: string, csv: string | null, extra: string[], pattern: RegExp, model = TINY): void {
  test(`bad input: ${name}`, () => {
    const dir = tempDir();
    const file = join(dir, "train.csv");
    if (csv !== null) writeFileSync(file, csv);
    const val = join(dir, "val.csv");
    writeFileSync(val, "text,label\n好,正面\n一般,中性\n");
    const out = join(dir, "out");
    const args = extra.map((a) => (a === "VAL" ? val : a));
    const r = run(["train", "--model", model, "--train-file", file, "--output-dir", out, "--max-length", "32", ...args]);
    assert.notEqual(r.code, 0);
    const errLines = r.stderr.trim().split("\n").filter((l) => l.startsWith("error:"));
    assert.equal(errLines.length, 1, r.stderr);
    assert.match(errLines[0]!, pattern);
    assert.ok(!existsSync(out), "no output folder after a failure");
  });
}

badInput("missing column", "review,label\n好,1\n", [], /train\.csv:2: no column "text".*--text-column/);
badInput("labels not 0…N−1", "text,label\n好,1\n差,3\n", [], /integer labels must be 0…N−1.*missing 0, 2/);
badInput("empty file", "", [], /train\.csv: file is empty/);
badInput("unknown label in validation", "text,label\n好,正面\n差,负面\n", ["--validation-file", "VAL"], /val\.csv:3: unknown label "中性"/);
const noWeights = tempDir();
for (const f of ["config.json", "vocab.txt"]) copyFileSync(join(TINY, f), join(noWeights, f));
badInput("model folder without weights", "text,label\n好,1\n差,0\n", [], /no model weights found/, noWeights);
badInput("missing file", null, [], /train\.csv: file not found/);
badInput("row with too few columns", "text,label\n好,1\n差\n", [], /train\.csv:3: expected 2 columns/);
badInput("malformed quoting", 'text,label\n"好,1\n', [], /train\.csv:\d+: malformed CSV/);
badInput("binary file", "\u0000\u0001\u0002PK", [], /binary file/);
badInput("top-k without K", "text,label\n好,1\n差,0\n", ["--strategy", "top-k"], /--strategy top-k needs --top-k/);

test("HF TrainingArguments spellings are accepted; a typo gets a suggestion", () => {
  const dir = tempDir();
  writeFileSync(join(dir, "t.csv"), "text,label\n好,1\n差,0\n");
  const ok = run(["train", "--model_name_or_path", TINY, "--train_file", join(dir, "t.csv"), "--output_dir", join(dir, "o"),
    "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--max-length", "16"]);
  assert.equal(ok.code, 0, ok.stderr);
  const typo = run(["train", "--model", TINY, "--train-file", "x", "--output-dir", "y", "--learning-rat", "1"]);
  assert.notEqual(typo.code, 0);
  assert.match(typo.stderr, /Did you mean --learning-rate\?/);
});

test("--validation-split holds out a stratified part; --test-file is evaluated once; data_report.json written", () => {
  const dir = tempDir();
  const out = join(dir, "out");
  const rows = Array.from({ length: 40 }, (_, i) => `${i % 2 ? "好评" : "差评"}${i},${i % 2 ? "正面" : "负面"}`);
  writeFileSync(join(dir, "t.csv"), "text,label\n" + rows.join("\n") + "\n");
  writeFileSync(join(dir, "test.csv"), "text,label\n好评,正面\n差评,负面\n");
  const r = run(["train", "--model", TINY, "--train-file", join(dir, "t.csv"), "--output-dir", out, "--validation-split", "0.25",
    "--test-file", join(dir, "test.csv"), "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--group-by-length"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /validation: 10 rows held out .*stratified/);
  assert.match(r.stderr, /test_loss: \d\.\d{4} \| test_accuracy: \d\.\d{4}/);
  assert.match(r.stdout, /Val Accuracy/);
  const report = JSON.parse(readFileSync(join(out, "data_report.json"), "utf8"));
  assert.deepEqual(report.validation.labels, { 负面: 5, 正面: 5 });
  assert.equal(report.train.rows, 30);
  const both = run(["train", "--model", TINY, "--train-file", join(dir, "t.csv"), "--output-dir", join(dir, "o2"), "--validation-split", "0.2", "--validation-file", join(dir, "test.csv")]);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /error: use --validation-file or --validation-split, not both/);
});

test("weitiao tokenize prints JSONL encodings; --truncation only_second cuts the pair", () => {
  const r = run(["tokenize", "--model", TINY, "--text", "这部电影太好看了", "--text-pair", "我也这么认为真的", "--max-length", "12", "--truncation", "only_second"]);
  assert.equal(r.code, 0, r.stderr);
  const e = JSON.parse(r.stdout);
  assert.deepEqual(e.tokens, ["[CLS]", "这", "部", "电", "影", "太", "好", "看", "了", "[SEP]", "我", "[SEP]"]);
  assert.deepEqual(e.token_type_ids, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
  const bad = run(["tokenize", "--model", TINY, "--text", "这部电影太好看了", "--text-pair", "我", "--max-length", "6", "--truncation", "only_second"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^error: cannot truncate with only_second/m);
});

test("--config YAML/JSON: its keys act as flags, command-line flags win; the resolved options are saved", () => {
  const dir = tempDir();
  writeFileSync(join(dir, "t.csv"), "text,label\n好,1\n差,0\n很好,1\n很差,0\n");
  writeFileSync(join(dir, "c.yaml"), `model: ${TINY}\ntrain_file: ${join(dir, "t.csv")}\nlearning-rate: 0.001\nbatchSize: 2\nepochs: 1\nmax_length: 16\nshuffle: false\nseed: 9\n`);
  const out = join(dir, "out");
  const r = run(["train", "--config", join(dir, "c.yaml"), "--output-dir", out, "--learning-rate", "0.0002"]);
  assert.equal(r.code, 0, r.stderr);
  const args = JSON.parse(readFileSync(join(out, "training_args.json"), "utf8"));
  assert.equal(args.learning_rate, 0.0002, "the flag wins over the config file");
  assert.equal(args.per_device_train_batch_size, 2);
  assert.equal(args.shuffle, false);
  assert.equal(args.seed, 9);
  writeFileSync(join(dir, "c.json"), JSON.stringify({ "learning-rate": "oops" }));
  const bad = run(["train", "--config", join(dir, "c.json"), "--model", TINY, "--train-file", join(dir, "t.csv"), "--output-dir", join(dir, "o2")]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--learning-rate needs a number, got "oops"/);
});

test("weitiao evaluate prints loss, accuracy, macro F1, per-class numbers and the confusion matrix", () => {
  const dir = tempDir();
  const out = join(dir, "out");
  writeFileSync(join(dir, "t.csv"), "text,label\n好,正面\n差,负面\n很好,正面\n很差,负面\n");
  assert.equal(run(["train", "--model", TINY, "--train-file", join(dir, "t.csv"), "--output-dir", out, "--epochs", "1", "--max-length", "16"]).code, 0);
  const r = run(["evaluate", "--model", out, "--input", join(dir, "t.csv")]);
  assert.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout);
  assert.equal(m.rows, 4);
  for (const k of ["eval_loss", "eval_accuracy", "eval_macro_precision", "eval_macro_recall", "eval_macro_f1"]) assert.equal(typeof m[k], "number", k);
  assert.deepEqual(m.confusion_matrix.labels, ["负面", "正面"]);
  assert.equal(m.confusion_matrix.matrix.flat().reduce((a: number, b: number) => a + b, 0), 4);
  assert.equal(m.per_class.length, 2);
});

test("the saved training_args.json repeats the run exactly through --config", () => {
  const dir = tempDir();
  writeFileSync(join(dir, "t.csv"), "text,label\n好,正面\n差,负面\n很好,正面\n很差,负面\n不错,正面\n糟糕,负面\n");
  const first = join(dir, "first");
  assert.equal(run(["train", "--model", TINY, "--train-file", join(dir, "t.csv"), "--output-dir", first, "--epochs", "2",
    "--batch-size", "2", "--max-length", "16", "--learning-rate", "1e-3", "--group-by-length", "--seed", "11"]).code, 0);
  const again = join(dir, "again");
  const r = run(["train", "--config", join(first, "training_args.json"), "--output-dir", again]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readFileSync(join(again, "model.safetensors")), readFileSync(join(first, "model.safetensors")));
});
