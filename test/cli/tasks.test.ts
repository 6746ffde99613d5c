/** Multi-label and regression data end to end: detection, training, saved config, predictions. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, TINY, tempDir } from "../helpers.js";

const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

/** `weitiao train` for 2 epochs on a CSV of these lines (used as train and validation set); returns the run and its output folder. */
function trainOn(rows: string[], extra: string[] = []): { r: ReturnType<typeof run>; out: string } {
  const dir = tempDir();
  writeFileSync(join(dir, "t.csv"), rows.join("\n") + "\n");
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", join(dir, "t.csv"), "--validation-file", join(dir, "t.csv"), "--output-dir", out,
    "--epochs", "2", "--batch-size", "3", "--max-length", "16", ...extra, "--backend", "typescript"]);
  return { r, out };
}

test("multi-label labels (\"体育|娱乐\" and JSON arrays) train with BCE and predict label sets", () => {
  const rows = ["text,label", "球赛很精彩,体育", "明星演唱会,娱乐", "球星上综艺,体育|娱乐", "\"电影票房\",\"[\"\"娱乐\"\"]\"", "马拉松比赛,体育", "综艺节目,娱乐"];
  const { r, out } = trainOn(rows, ["--learning-rate", "1e-2"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /task: multi_label_classification \(2 output\(s\)\)/);
  const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.equal(cfg.problem_type, "multi_label_classification");
  assert.deepEqual(cfg.id2label, { 0: "体育", 1: "娱乐" });
  const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
  const ev = state.log_history.find((h: Record<string, number>) => "eval_loss" in h);
  for (const k of ["eval_micro_f1", "eval_macro_f1", "eval_subset_accuracy"]) assert.ok(k in ev, k);
  const p = run(["predict", "--model", out, "--text", "球赛", "--threshold", "0.01"]);
  assert.equal(p.status, 0, p.stderr);
  const pred = JSON.parse(p.stdout);
  assert.deepEqual(pred.labels, ["体育", "娱乐"], "every label above a tiny threshold");
  assert.ok(Math.abs(pred.probabilities["体育"] + pred.probabilities["娱乐"] - 1) > 1e-6, "sigmoid, not softmax");
});

test("decimal labels train a regression head (MSE) with mse/pearson metrics", () => {
  const { r, out } = trainOn(["text,label", "很好,4.5", "不错,3.5", "一般,2.5", "很差,1.0", "非常好,5.0", "差,1.5"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Epoch 2 \| Loss: \d+\.\d{4} \| Val Loss: \d+\.\d{4} \| Val MSE: \d+\.\d{4}/);
  const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.equal(cfg.problem_type, "regression");
  assert.deepEqual(Object.keys(cfg.id2label), ["0"]);
  const p = JSON.parse(run(["predict", "--model", out, "--text", "很好"]).stdout);
  assert.equal(p.label, null);
  assert.equal(typeof p.score, "number");
  assert.equal(p.logits.length, 1);
  const bad = tempDir();
  writeFileSync(join(bad, "t.csv"), "text,label\n好,4.5\n差,oops\n");
  const e = run(["train", "--model", TINY, "--train-file", join(bad, "t.csv"), "--output-dir", join(bad, "o"), "--problem-type", "regression"]);
  assert.notEqual(e.status, 0);
  assert.match(e.stderr, /t\.csv:3: regression needs a number label, found "oops"/);
});
