/** Best-model selection and early stopping on a crafted validation curve. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { DEFAULT_TRAINING_ARGS, evaluate, type EvalResult, Trainer, type EvalLog } from "../../src/train/trainer.js";
import { TINY } from "../helpers.js";

const rows: EncodedExample[] = Array.from({ length: 8 }, (_, i) => ({ inputIds: [101, 200 + i, 102], tokenTypeIds: [0, 0, 0], label: i % 2 }));

function crafted(curve: { accuracy: number; loss: number }[]): () => EvalResult {
  let i = 0;
  return () => {
    const p = curve[Math.min(i++, curve.length - 1)]!;
    return { loss: p.loss, accuracy: p.accuracy, metrics: { accuracy: p.accuracy }, classification: null, logits: new Float32Array(), probabilities: new Float32Array(), predictions: new Int32Array() };
  };
}

async function run(opts: Partial<typeof DEFAULT_TRAINING_ARGS>, curve: { accuracy: number; loss: number }[]) {
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  const snapshots = new Map<number, Float32Array>();
  const trainer = new Trainer(model, { ...DEFAULT_TRAINING_ARGS, epochs: 6, batchSize: 4, learningRate: 1e-2, loggingSteps: 0, ...opts }, rows, rows, 0, {
    evaluate: crafted(curve),
    onStep: ({ step }) => void snapshots.set(step, Float32Array.from(model.params.data)),
  });
  const result = await trainer.train();
  return { result, model, snapshots };
}

const curve = [
  { accuracy: 0.5, loss: 0.7 }, { accuracy: 0.75, loss: 0.6 }, { accuracy: 0.6, loss: 0.5 }, { accuracy: 0.7, loss: 0.55 },
  { accuracy: 0.9, loss: 0.4 }, { accuracy: 0.95, loss: 0.3 },
];

test("early stopping after N evaluations without improvement; the best model is loaded at the end", async () => {
  const { result, model, snapshots } = await run({ earlyStoppingPatience: 2, loadBestModelAtEnd: true }, curve);
  assert.ok(result.earlyStopped);
  assert.equal(result.epochs.length, 4, "stops after the 4th evaluation (2 without improvement)");
  assert.deepEqual(result.best, { metric: "accuracy", value: 0.75, step: 4, restored: true });
  assert.deepEqual(Float32Array.from(model.params.data), snapshots.get(4), "weights of step 4 (epoch 2) restored");
  assert.equal((result.logHistory.filter((h) => "eval_loss" in h) as EvalLog[]).length, 4);
});

test("--metric-for-best-model loss: smaller is better; without load-best the last weights stay", async () => {
  const { result, model, snapshots } = await run({ metricForBestModel: "eval_loss" }, curve);
  assert.equal(result.earlyStopped, false);
  assert.deepEqual(result.best, { metric: "loss", value: 0.3, step: 12, restored: false });
  assert.deepEqual(Float32Array.from(model.params.data), snapshots.get(12));
});

test("evaluation every N steps", async () => {
  const { result } = await run({ evalStrategy: "steps", evalSteps: 3, epochs: 2 }, curve);
  assert.deepEqual((result.logHistory as EvalLog[]).filter((h) => "eval_loss" in h).map((h) => h.step), [3]);
});

test("the evaluation after the last step comes back as finalEval (not run again); none after an earlier evaluation, a restore or an evaluate hook", async () => {
  const fresh = () => loadModelFromDir(TINY, { backend: tsBackend }).model;
  const args = { ...DEFAULT_TRAINING_ARGS, epochs: 2, batchSize: 4, learningRate: 1e-2, loggingSteps: 0, evalStrategy: "epoch" as const };
  const model = fresh();
  const result = await new Trainer(model, args, rows, rows, 0).train();
  assert.ok(result.finalEval, "evaluated after the final step");
  assert.deepEqual(result.finalEval, evaluate(model, rows, args.evalBatchSize, 0, args.threshold), "what a new evaluation of the final weights gives");
  const earlier = await new Trainer(fresh(), { ...args, evalStrategy: "steps", evalSteps: 3 }, rows, rows, 0).train();
  assert.equal(earlier.finalEval, undefined, "last evaluated at step 3 of 4");
  const restored = await new Trainer(fresh(), { ...args, loadBestModelAtEnd: true }, rows, rows, 0).train();
  assert.ok(restored.best?.restored);
  assert.equal(restored.finalEval, undefined, "best weights restored");
  const { result: hooked } = await run({ epochs: 2 }, curve);
  assert.equal(hooked.finalEval, undefined, "an evaluate hook's result is not the built-in evaluation");
});
