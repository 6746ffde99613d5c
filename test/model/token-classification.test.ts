/**
 * The token-classification head (BertForTokenClassification) against test/fixtures/ner/bert-tiny-chinese-ner (its
 * README, copied from shared/fixtures): logits and hidden states at every real token, the loss over labels ≠ −100,
 * every gradient, and the full, head_only and top_layer 12-step AdamW trajectories through the Trainer, on every
 * backend, at the README's tolerances. The data side (JSONL tokens/ner_tags, alignment, CLI) is issue 19's next step.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../src/backend/types.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { DEFAULT_TRAINING_ARGS, Trainer, type StepLog, type TrainingArgs } from "../../src/train/trainer.js";
import { BACKENDS } from "../backends.js";
import { maxAbs, relErr } from "../helpers.js";

import { checkNerTrajectory, NER_DIR as DIR, nerManifest as manifest } from "./ner-reference.js";

function fixture() {
  const f = SafetensorsFile.open(join(DIR, "reference", "forward.safetensors"));
  const [B, T] = f.info("input_ids").shape as [number, number];
  const input = { inputIds: f.int("input_ids"), attentionMask: f.int("attention_mask"), tokenTypeIds: f.int("token_type_ids"), batch: B, seqLen: T };
  const labels = f.int("labels");
  return { f, input, labels, B, T };
}

function load(backend: Backend) {
  const { model } = loadModelFromDir(join(DIR, "model"), { backend, task: "token-classification", inference: true });
  model.setDropout(0);
  return model;
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] token classification: logits and hidden states at every real token, and the eval loss, match the reference`, () => {
    const { f, input, labels } = fixture();
    try {
      const model = load(backend);
      assert.equal(model.params.byName.has("bert.pooler.dense.weight"), false, "no pooler in a token-classification model");
      const C = model.config.num_labels;
      const H = model.config.hidden_size;
      const real = (width: number) => (i: number): boolean => input.attentionMask[Math.floor(i / width)] === 1;
      const out = model.forward(input, { train: false, outputHiddenStates: true });
      const e = relErr(out.logits, f.float("logits"), real(C));
      assert.ok(e < 1e-5, `logits rel ${e}`);
      for (let i = 0; i <= model.config.num_hidden_layers; i++) {
        const h = relErr(out.hiddenStates![i]!, f.float(`hidden_states.${i}`), real(H));
        assert.ok(h < 1e-5, `hidden_states.${i} rel ${h}`);
      }
      // Without hidden states asked for (the path training takes), the logits are the same.
      const fast = model.forward(input, { train: false });
      assert.ok(relErr(fast.logits, f.float("logits"), real(C)) < 1e-5);
      const loss = model.head.loss(backend, "float32", fast.logits, { labels, targets: null }, input.batch * input.seqLen, 0.5);
      const ref = f.float("eval_loss")[0]!;
      assert.ok(Math.abs(loss.sum / loss.count - ref) < 1e-6 * ref, `eval_loss ${loss.sum / loss.count} vs ${ref}`);
      // Mutation: counting the −100 positions (as label 0) in the mean moves the loss far past the tolerance.
      const all = Int32Array.from(labels, (l) => (l < 0 ? 0 : l));
      const wrong = model.head.loss(backend, "float32", fast.logits, { labels: all, targets: null }, input.batch * input.seqLen, 0.5);
      assert.ok(Math.abs(wrong.sum / wrong.count - ref) > 2e-6 * ref, "the check can fail");
    } finally {
      f.close();
    }
  });

  test(`[${backend.name}] token classification: the train loss and every gradient match the reference`, () => {
    const { f, input, labels } = fixture();
    const grads = SafetensorsFile.open(join(DIR, "reference", "grads.safetensors"));
    try {
      const model = load(backend);
      const rows = input.batch * input.seqLen;
      const out = model.forward(input, { train: true, dropoutSeed: 1 });
      const loss = model.head.loss(backend, "float32", out.logits, { labels, targets: null }, rows, 0.5);
      const ref = f.float("train_loss")[0]!;
      assert.ok(Math.abs(loss.sum / loss.count - ref) < 1e-6 * ref, `train_loss ${loss.sum / loss.count} vs ${ref}`);
      model.zeroGrad();
      model.backward(out.cache!, loss.grad(1 / loss.count));
      assert.deepEqual(model.params.specs.map((s) => `grad.${s.name}`).sort(), grads.names().sort(), "the same parameters as the reference");
      for (const spec of model.params.specs) {
        const ours = model.params.gradOf(spec.name);
        if (spec.name.endsWith("attention.self.key.bias")) {
          assert.ok(maxAbs(ours) < 1e-6, `${spec.name} max ${maxAbs(ours)}`);
          continue;
        }
        const e = relErr(ours, grads.float(`grad.${spec.name}`));
        assert.ok(e < 1e-4, `${spec.name} rel ${e}`);
      }
      const H = model.config.hidden_size;
      assert.equal(maxAbs(model.params.gradOf("bert.embeddings.word_embeddings.weight").subarray(0, H)), 0, "[PAD]'s row gets no gradient");
    } finally {
      f.close();
      grads.close();
    }
  });

  const strategies: Record<string, Partial<TrainingArgs>> = { full: {}, head_only: { strategy: "head" }, top_layer: { strategy: "top-k", topK: 1 } };
  for (const [strategy, extra] of Object.entries(strategies)) {
    test(`[${backend.name}] token classification: the 12-step ${strategy} trajectory matches the reference`, async () => {
      const { f, input, labels, B, T } = fixture();
      f.close();
      const rows = Array.from({ length: B }, (_, i): EncodedExample => ({
        inputIds: [...input.inputIds.subarray(i * T, i * T + T)], tokenTypeIds: [...input.tokenTypeIds.subarray(i * T, i * T + T)],
        attentionMask: [...input.attentionMask.subarray(i * T, i * T + T)], label: -1, tokenLabels: [...labels.subarray(i * T, i * T + T)],
      }));
      const { model } = loadModelFromDir(join(DIR, "model"), { backend, task: "token-classification" });
      model.setDropout(0);
      const r = manifest.trajectory.results[strategy]!;
      const args: TrainingArgs = {
        ...DEFAULT_TRAINING_ARGS, batchSize: 4, learningRate: r.base_lr, epochs: 1, warmupSteps: 3, weightDecay: 0.01,
        maxGradNorm: 1, shuffle: false, loggingSteps: 1, evalStrategy: "no", ...extra,
      };
      const trainSet = manifest.trajectory.batches.flat().map((i) => rows[i]!);
      const result = await new Trainer(model, args, trainSet, null, 0, {}).train();
      checkNerTrajectory(strategy, result.logHistory as StepLog[], new Map(model.params.specs.map((p) => [p.name, model.params.value(p.name)] as const)));
    });
  }
}
