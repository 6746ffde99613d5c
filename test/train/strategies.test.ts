/** gradual unfreezing and layer-wise lr decay on the fixture model: what moves when, and with which lr. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { DEFAULT_TRAINING_ARGS, Trainer, type StepLog } from "../../src/train/trainer.js";
import { BACKENDS } from "../backends.js";
import { layerLrScale, trainablePredicate } from "../../src/train/strategy.js";
import { TINY } from "../helpers.js";

const rows: EncodedExample[] = Array.from({ length: 8 }, (_, i) => ({
  inputIds: [101, 100 + i * 37, 2000 + i * 11, 102], tokenTypeIds: [0, 0, 0, 0], label: i % 2,
}));

function groupOf(name: string): string {
  if (name.startsWith("classifier.")) return "classifier";
  if (name.startsWith("bert.pooler.")) return "pooler";
  if (name.startsWith("bert.embeddings.")) return "embeddings";
  return `layer${/layer\.(\d+)\./.exec(name)![1]}`;
}

test("gradual unfreezing: head, then the top layer, then every layer, then the embeddings", async () => {
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  model.setDropout(0);
  const epochsMoved: Set<string>[] = [];
  let before = Float32Array.from(model.params.data);
  const trainer = new Trainer(model, {
    ...DEFAULT_TRAINING_ARGS, epochs: 4, batchSize: 4, learningRate: 1e-2, strategy: "gradual", shuffle: false, loggingSteps: 0,
  }, rows, null, 0, {
    onEpochEnd: () => {
      const moved = new Set<string>();
      for (const s of model.params.specs) {
        const now = model.params.value(s.name);
        if (now.some((v, i) => v !== before[s.offset + i])) moved.add(groupOf(s.name));
      }
      epochsMoved.push(moved);
      before = Float32Array.from(model.params.data);
    },
  });
  await trainer.train();
  assert.deepEqual([...epochsMoved[0]!].sort(), ["classifier"]);
  assert.deepEqual([...epochsMoved[1]!].sort(), ["classifier", "layer1", "pooler"]);
  assert.deepEqual([...epochsMoved[2]!].sort(), ["classifier", "layer0", "layer1", "pooler"]);
  assert.deepEqual([...epochsMoved[3]!].sort(), ["classifier", "embeddings", "layer0", "layer1", "pooler"]);
  // Newly unfrozen parameters start their own Adam step count: layer 0 joined in epoch 3 (2 steps per epoch).
  const steps = (name: string): number => trainer.optimizer.steps[model.params.spec(name).index]!;
  assert.equal(steps("classifier.weight"), 8);
  assert.equal(steps("bert.pooler.dense.weight"), 6);
  assert.equal(steps("bert.encoder.layer.0.output.dense.weight"), 4);
  assert.equal(steps("bert.embeddings.LayerNorm.weight"), 2);
});

test("layer-wise lr decay: per-group lr values (ELECTRA rule)", async () => {
  const L = 2, D = 0.5;
  assert.equal(layerLrScale(L + 2, L, D), 1); // classifier
  assert.equal(layerLrScale(L + 1, L, D), 1); // pooler
  assert.equal(layerLrScale(2, L, D), 0.5); // top layer (index 1): lr·D
  assert.equal(layerLrScale(1, L, D), 0.25); // layer 0: lr·D²
  assert.equal(layerLrScale(0, L, D), 0.125); // embeddings: lr·D^(L+1)
  // And the optimizer really uses them: after one Adam step with lr·s, |Δp| ≈ lr·s for each parameter (Adam's
  // first step moves every entry with a non-zero gradient by exactly lr·s, up to eps).
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  model.setDropout(0);
  const start = Float32Array.from(model.params.data);
  const lr = 1e-3;
  const trainer = new Trainer(model, {
    ...DEFAULT_TRAINING_ARGS, epochs: 1, maxSteps: 2, batchSize: 8, learningRate: lr, layerLrDecay: D, shuffle: false, loggingSteps: 0,
    warmupSteps: 0,
  }, rows, null, 0);
  void trainer;
  // Run exactly one update at the full lr (schedule factor at step 0 of 2 with no warmup = 1).
  trainer.args.maxSteps = 1;
  await trainer.train();
  const expect: Record<string, number> = {
    "classifier.weight": lr, "bert.pooler.dense.weight": lr, "bert.encoder.layer.1.output.dense.weight": lr * D,
    "bert.encoder.layer.0.output.dense.weight": lr * D * D, "bert.embeddings.position_embeddings.weight": lr * D ** 3,
  };
  for (const [name, want] of Object.entries(expect)) {
    const s = model.params.spec(name);
    let maxStep = 0;
    for (let i = 0; i < s.size; i++) maxStep = Math.max(maxStep, Math.abs(model.params.data[s.offset + i]! - start[s.offset + i]!));
    assert.ok(Math.abs(maxStep - want) / want < 1e-3, `${name}: step ${maxStep}, expected ${want}`);
  }
});

test("strategy predicates", async () => {
  const spec = (level: number) => ({ name: "x", shape: [1], index: 0, offset: 0, size: 1, level });
  const L = 12;
  const top2 = trainablePredicate("top-k", L, 1, 2);
  assert.deepEqual([0, 1, 10, 11, 12, 13, 14].map((l) => top2(spec(l))), [false, false, false, true, true, true, true]);
  const head = trainablePredicate("head", L, 1);
  assert.deepEqual([12, 13, 14].map((l) => head(spec(l))), [false, false, true]);
  assert.throws(() => trainablePredicate("top-k", L, 1, 13), /--top-k must be an integer from 0 to 12/);
});

// Rows of different lengths out of length order: features are computed in length-sorted batches and must come back
// to their own rows.
const varied: EncodedExample[] = [3, 9, 5, 12, 4, 7, 10, 6].map((len, i) => ({
  inputIds: [101, ...Array.from({ length: len }, (_, j) => 100 + ((i * 37 + j * 11) % 3000)), 102], tokenTypeIds: new Array(len + 2).fill(0), label: i % 2,
}));

for (const backend of BACKENDS) {
  test(`[${backend.name}] head strategy: cached encoder features give the same run as the uncached one at dropout 0`, async () => {
    const run = async (cacheFeatures: boolean) => {
      const { model } = loadModelFromDir(TINY, { backend });
      model.setDropout(0);
      const trainer = new Trainer(model, {
        ...DEFAULT_TRAINING_ARGS, epochs: 3, batchSize: 3, learningRate: 1e-2, strategy: "head", loggingSteps: 1, cacheFeatures,
      }, varied, null, 0);
      return { logs: (await trainer.train()).logHistory as StepLog[], w: Float32Array.from(model.params.value("classifier.weight")) };
    };
    const cached = await run(true);
    const plain = await run(false);
    assert.equal(cached.logs.length, 9);
    cached.logs.forEach((l, i) => {
      assert.ok(Math.abs(l.loss - plain.logs[i]!.loss) < 1e-6, `step ${i + 1} loss`);
      assert.ok(Math.abs(l.grad_norm - plain.logs[i]!.grad_norm) < 1e-5 * plain.logs[i]!.grad_norm);
    });
    for (let i = 0; i < cached.w.length; i++) assert.ok(Math.abs(cached.w[i]! - plain.w[i]!) < 1e-6);
  });
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] every layer trainable but the embeddings (top-k L, gradual's last epoch but one): the layers' gradients are full fine-tuning's`, () => {
    // Regression: layer 0's input (the embeddings' output) lived in a scratch arena that layer 1 reuses, so layer 0's
    // weight gradients were computed from overwritten values.
    const input = { inputIds: Int32Array.from(rows.flatMap((r) => r.inputIds)), attentionMask: new Int32Array(32).fill(1), tokenTypeIds: new Int32Array(32), batch: 8, seqLen: 4 };
    const labels = Int32Array.from(rows.map((r) => r.label));
    const grads = [() => true, trainablePredicate("top-k", 2, 1, 2)].map((predicate) => {
      const { model } = loadModelFromDir(TINY, { backend });
      model.setDropout(0);
      model.setTrainable(predicate);
      const out = model.forward(input, { train: true });
      const loss = model.head.loss(backend, "float32", out.logits, { labels, targets: null }, 8, 0.5);
      model.zeroGrad();
      model.backward(out.cache!, loss.grad(1 / loss.count));
      return Float32Array.from(model.params.gradOf("bert.encoder.layer.0.attention.self.query.weight"));
    });
    assert.deepEqual(grads[1], grads[0]);
  });
}
