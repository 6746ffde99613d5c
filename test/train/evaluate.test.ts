/** Evaluation and prediction batch rows by length but hand results back in input order, equal to one row at a time. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel, predict } from "../../src/api/predict.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { lengthSortedBatches } from "../../src/data/split.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { evaluate } from "../../src/train/trainer.js";
import { BACKENDS } from "../backends.js";
import { TINY, relErr } from "../helpers.js";

test("lengthSortedBatches: every index once, longest first, ties in input order", () => {
  const batches = lengthSortedBatches([3, 9, 5, 9, 1, 5, 7], 3);
  assert.deepEqual(batches, [[1, 3, 6], [2, 5, 0], [4]]);
  assert.deepEqual(lengthSortedBatches([], 4), []);
});

// Rows of very different lengths, in no length order, so sorted batches differ from file-order ones.
const rows: EncodedExample[] = [5, 17, 3, 11, 30, 8, 3, 22, 14, 6, 25].map((len, r) => ({
  inputIds: [101, ...Array.from({ length: len }, (_, j) => 200 + ((r * 31 + j * 7) % 900)), 102],
  tokenTypeIds: new Array(len + 2).fill(0),
  label: r % 2,
}));

for (const backend of BACKENDS) {
  test(`evaluate (${backend.name}): results in input order, equal to evaluating each row alone`, () => {
    const { model } = loadModelFromDir(TINY, { backend });
    const batched = evaluate(model, rows, 4, 0);
    const alone = rows.map((r) => evaluate(model, [r], 1, 0));
    assert.ok(relErr(batched.logits, alone.flatMap((a) => [...a.logits])) < 1e-6);
    assert.deepEqual([...batched.predictions], alone.map((a) => a.predictions[0]));
    assert.ok(Math.abs(batched.loss - alone.reduce((s, a) => s + a.loss, 0) / rows.length) < 1e-6);
    assert.equal(batched.metrics.accuracy, alone.filter((a, i) => a.predictions[0] === rows[i]!.label).length / rows.length);
  });
}

test("predict: input order kept with length-sorted batches; progress counts every row", async () => {
  const loaded = await loadModel(TINY, { backend: "typescript" });
  const texts = ["好", "这家餐厅的菜非常好吃，服务也很周到，下次还来", "差", "物流很快，包装完好", "质量太差了，用了一天就坏了，再也不买了，退货也很麻烦"];
  const progress: number[] = [];
  const batched = predict(loaded, texts.map((text) => ({ text })), { batchSize: 2, onProgress: (done) => progress.push(done) });
  const alone = texts.map((text) => predict(loaded, [{ text }])[0]!);
  batched.forEach((p, i) => {
    assert.ok(relErr(p.logits, alone[i]!.logits) < 1e-6, texts[i]);
    assert.equal(p.label, alone[i]!.label);
  });
  assert.deepEqual(progress, [2, 4, 5]);
});
