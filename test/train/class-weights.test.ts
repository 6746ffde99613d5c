/** --class-weights: sklearn's "balanced" weights, and the step loss torch's CrossEntropyLoss(weight=w) gives. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveClassWeights } from "../../src/train/trainer.js";
import { TINY, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "../cli/cli-helpers.js";

test("balanced weights are n / (C · count_c); explicit weights are checked", () => {
  assert.deepEqual(resolveClassWeights("balanced", [1, 1, 1, 1, 1, 0], 2, ["a", "b"]), [3, 0.6]);
  assert.deepEqual(resolveClassWeights("2, 0.5", [0, 1], 2, ["a", "b"]), [2, 0.5]);
  assert.throws(() => resolveClassWeights("balanced", [1, 1], 2, ["a", "b"]), /no row of class a/);
  assert.throws(() => resolveClassWeights("1,2,3", [0, 1], 2, ["a", "b"]), /2 non-negative numbers \(one per class: a, b\)/);
});

test("weitiao train --class-weights balanced: the first step's loss is Σ w_y·CE / Σ w_y over the batch, from the model's own logits", () => {
  const dir = tempDir();
  const rows: [string, string][] = [["很好", "正面"], ["不错", "正面"], ["好看", "正面"], ["喜欢", "正面"], ["推荐", "正面"], ["难吃", "负面"]];
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...rows.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--max-steps", "1", "--batch-size", "6", "--dropout", "0",
    "--logging-steps", "1", "--class-weights", "balanced", "--precision", "fp32"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /class weights: 负面 3\.0000, 正面 0\.6000/);
  // the untrained model's logits for the same rows (train mode at dropout 0 = eval mode)
  const p = run(["predict", "--model", TINY, "--text", ...rows.map(([t]) => t), "--max-length", "128"]);
  assert.equal(p.code, 0, p.stderr);
  const logits = p.stdout.trim().split("\n").map((l) => JSON.parse(l).logits as number[]);
  const w = { 负面: 3, 正面: 0.6 } as Record<string, number>;
  const index = { 负面: 0, 正面: 1 } as Record<string, number>;
  let num = 0;
  let den = 0;
  rows.forEach(([, label], i) => {
    const l = logits[i]!;
    const m = Math.max(...l);
    const lse = m + Math.log(l.reduce((a, v) => a + Math.exp(v - m), 0));
    num += w[label]! * (lse - l[index[label]!]!);
    den += w[label]!;
  });
  const step = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[])[0]!;
  assert.ok(Math.abs(step.loss - num / den) < 1e-5, `${step.loss} vs ${num / den}`);
  const unweighted = rows.reduce((a, [, label], i) => {
    const l = logits[i]!;
    const m = Math.max(...l);
    return a + m + Math.log(l.reduce((s, v) => s + Math.exp(v - m), 0)) - l[index[label]!]!;
  }, 0) / rows.length;
  assert.ok(Math.abs(unweighted - num / den) > 1e-4, "the check can fail: weighting moves the loss");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--class-weights", "1,2,3"]), /--class-weights must be "balanced" or 2 non-negative numbers/);
});
