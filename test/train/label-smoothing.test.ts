/** --label-smoothing-factor: HF's LabelSmoother, its value by hand and its gradient by finite differences. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { labelSmoothed } from "../../src/train/loss.js";
import { TINY, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "../cli/cli-helpers.js";

const softmax = (l: number[]): number[] => {
  const m = Math.max(...l);
  const e = l.map((v) => Math.exp(v - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
};

test("label smoothing: (1−ε)·NLL + ε·mean −log p over active rows (−100 ignored); gradient p − smoothed targets", () => {
  const logits = [[1, -0.5, 0.25], [0.3, 0.2, -1], [2, 0, 0]];
  const labels = Int32Array.from([2, -100, 0]);
  const eps = 0.1;
  const probs = Float64Array.from(logits.flatMap(softmax));
  const r = labelSmoothed("float64", probs, labels, 3, 3, eps);
  // by hand, rows 0 and 2
  const row = (i: number, y: number): number => {
    const p = softmax(logits[i]!);
    return (1 - eps) * -Math.log(p[y]!) + (eps * p.reduce((a, v) => a - Math.log(v), 0)) / 3;
  };
  assert.ok(Math.abs(r.sum - (row(0, 2) + row(2, 0))) < 1e-12);
  // transformers 5.18's LabelSmoother(epsilon=0.1) on these float64 logits and labels printed 0.8254269344745797 (the
  // mean over the 2 active rows; it sums the smoothing term in float32, hence the 1e-7)
  assert.ok(Math.abs(r.sum / 2 - 0.8254269344745797) < 1e-7, String(r.sum / 2));
  const g = r.grad(1);
  const h = 1e-6;
  for (let i = 0; i < 3; i++) for (let c = 0; c < 3; c++) {
    const f = (d: number): number => {
      const l = logits.map((x) => [...x]);
      l[i]![c]! += d;
      return labelSmoothed("float64", Float64Array.from(l.flatMap(softmax)), labels, 3, 3, eps).sum;
    };
    const num = (f(h) - f(-h)) / (2 * h);
    assert.ok(Math.abs(num - g[i * 3 + c]!) < 1e-7, `d/dlogit[${i}][${c}] ${g[i * 3 + c]} vs ${num}`);
  }
  assert.ok(g.slice(3, 6).every((v) => v === 0), "an ignored row has no gradient");
});

test("weitiao train --label_smoothing_factor changes the loss as HF's does; regression is refused", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n");
  const args = (out: string, extra: string[]): string[] => ["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, out), "--max-steps", "1", "--dropout", "0", "--precision", "fp32", ...extra];
  const loss = (out: string): number => JSON.parse(run(["evaluate", "--model", join(dir, out), "--input", file]).stdout).eval_loss;
  const plain = run(args("a", []));
  const smooth = run(args("b", ["--label_smoothing_factor", "0.1"]));
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(smooth.code, 0, smooth.stderr);
  assert.notEqual(loss("a"), loss("b"), "the smoothed loss's gradient moved the weights differently");
  // the evaluation loss is the smoothed one too, as HF's Trainer reports it: (1−ε)·NLL + ε·mean over classes of −log p
  const ev = run(args("e", ["--label_smoothing_factor", "0.3", "--validation-file", file]));
  assert.equal(ev.code, 0, ev.stderr);
  const smoothedEval = JSON.parse(readFileSync(join(dir, "e", "metrics.json"), "utf8")).eval_loss as number;
  const p = run(["predict", "--model", join(dir, "e"), "--input", file]);
  const labels = [1, 0, 1, 0];
  const expected = p.stdout.trim().split("\n").map((l, i) => {
    const z = JSON.parse(l).logits as number[];
    const m = Math.max(...z);
    const lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
    const nll = z.map((v) => lse - v);
    return 0.7 * nll[labels[i]!]! + 0.3 * (nll.reduce((a, b) => a + b, 0) / nll.length);
  }).reduce((a, b) => a + b, 0) / labels.length;
  assert.ok(Math.abs(smoothedEval - expected) < 1e-5, `eval_loss ${smoothedEval} vs smoothed ${expected}`);
  assert.ok(Math.abs(smoothedEval - loss("e")) > 1e-5, "and not the plain loss");
  const reg = join(dir, "reg.csv");
  writeFileSync(reg, "text,label\n很好,0.5\n很差,1.5\n");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", reg, "--output-dir", join(dir, "c"), "--label-smoothing-factor", "0.1"]),
    /--label-smoothing-factor applies to single-label and token classification, not regression/);
});
