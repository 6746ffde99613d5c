/** Metrics against hand-computed values; the multi-label and regression losses against finite differences. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { classificationMetrics, multiLabelMetrics, regressionMetrics } from "../../src/train/metrics.js";
import { bceWithLogits, bceWithLogitsGrad, squaredError, squaredErrorGrad } from "../../src/train/loss.js";

const close = (a: number, b: number, msg?: string): void => assert.ok(Math.abs(a - b) < 1e-12, `${msg ?? ""} ${a} vs ${b}`);

test("single-label: accuracy, per-class and macro precision/recall/F1, confusion matrix", () => {
  // true:  a a a b b c
  // pred:  a a b b c c
  const m = classificationMetrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"]);
  close(m.accuracy, 4 / 6);
  assert.deepEqual(m.confusion, [[2, 1, 0], [0, 1, 1], [0, 0, 1]]);
  // a: P 2/2, R 2/3, F1 0.8 ; b: P 1/2, R 1/2, F1 0.5 ; c: P 1/2, R 1/1, F1 2/3
  close(m.per_class[0]!.precision, 1); close(m.per_class[0]!.recall, 2 / 3); close(m.per_class[0]!.f1, 0.8);
  close(m.per_class[1]!.f1, 0.5); close(m.per_class[2]!.f1, 2 / 3);
  close(m.macro_precision, (1 + 0.5 + 0.5) / 3); close(m.macro_recall, (2 / 3 + 0.5 + 1) / 3); close(m.macro_f1, (0.8 + 0.5 + 2 / 3) / 3);
  assert.deepEqual(m.per_class.map((c) => c.support), [3, 2, 1]);
});

test("multi-label: micro and macro F1, subset accuracy at a threshold", () => {
  const targets = [1, 0, 1, 0, 1, 0];
  const probs = [0.9, 0.6, 0.4, 0.2, 0.7, 0.1]; // rows: [1,1,0] vs [1,0,1]; [0,1,0] vs [0,1,0]
  const m = multiLabelMetrics(targets, probs, 2, 3, 0.5);
  // label0: tp1 ; label1: tp1 fp1 ; label2: fn1 → micro P 2/3, R 2/3, F1 2/3
  close(m.micro_f1, 2 / 3);
  close(m.macro_f1, (1 + 2 / 3 + 0) / 3);
  close(m.subset_accuracy, 0.5);
});

test("regression: MSE and Pearson r", () => {
  const m = regressionMetrics([1, 2, 3, 4], [1.5, 2, 2.5, 5]);
  close(m.mse, (0.25 + 0 + 0.25 + 1) / 4);
  // Deviations (−1.5, −0.5, 0.5, 1.5) and (−1.25, −0.75, −0.25, 2.25): Σxy = 5.5, Σx² = 5, Σy² = 7.25.
  close(m.pearson, 5.5 / Math.sqrt(5 * 7.25));
});

test("BCEWithLogits and squared error gradients match finite differences", () => {
  const logits = Float64Array.from([0.3, -1.2, 2.0, 0.1, -0.4, 0.9]);
  const targets = Float32Array.from([1, 0, 1, 0, 0, 1]);
  const r = bceWithLogits("float64", logits, targets, 2, 3);
  // HF BCEWithLogitsLoss(mean) over all 6 entries equals (1/rows) Σ rows' means.
  const manual = [...logits].reduce((s, x, i) => s - (targets[i]! * Math.log(1 / (1 + Math.exp(-x))) + (1 - targets[i]!) * Math.log(1 - 1 / (1 + Math.exp(-x)))), 0) / 6;
  close(r.sum / 2, manual);
  const g = bceWithLogitsGrad("float64", r.probs, targets, 2, 3, 0.5);
  const h = 1e-6;
  for (let i = 0; i < 6; i++) {
    const p = logits.slice(); p[i]! += h;
    const m = logits.slice(); m[i]! -= h;
    const fd = (bceWithLogits("float64", p, targets, 2, 3).sum - bceWithLogits("float64", m, targets, 2, 3).sum) / (2 * h) * 0.5;
    assert.ok(Math.abs(fd - g[i]!) < 1e-8);
  }
  const y = Float32Array.from([0.5, -1]);
  const x = Float64Array.from([0.2, 0.7]);
  const gs = squaredErrorGrad("float64", x, y, 2, 0.5);
  for (let i = 0; i < 2; i++) {
    const p = x.slice(); p[i]! += h;
    const m = x.slice(); m[i]! -= h;
    assert.ok(Math.abs((squaredError(p, y, 2) - squaredError(m, y, 2)) / (2 * h) * 0.5 - gs[i]!) < 1e-8);
  }
});
