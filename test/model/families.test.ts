/**
 * The six encoder families against their reference fixtures (test/fixtures/families/README.md, copied from
 * shared/fixtures/README-families.md): logits, pooler output and every hidden state, every gradient, and the `full`
 * and `head_only` 12-step AdamW trajectories, on every backend, at the README's tolerances.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../src/backend/types.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import { Trainer, type StepLog } from "../../src/train/trainer.js";
import { BACKENDS } from "../backends.js";
import { maxAbs, relErr } from "../helpers.js";
import { checkFamilyTrajectory, familyArgs, familyDir, familyReference, FAMILY_FIXTURES } from "./family-reference.js";

function loadFamily(name: string, backend: Backend) {
  const { model } = loadModelFromDir(familyDir(name), { backend, inference: true });
  model.setDropout(0);
  return model;
}

for (const backend of BACKENDS) for (const name of FAMILY_FIXTURES) {
  test(`[${backend.name}] ${name}: logits, pooler output and every hidden state match the reference`, () => {
    const ref = familyReference(name);
    const model = loadFamily(name, backend);
    const f = SafetensorsFile.open(join(ref.dir, "reference", "forward.safetensors"));
    try {
      const out = model.forward(ref.input, { train: false, outputHiddenStates: true });
      assert.ok(relErr(out.logits, f.float("logits")) < 1e-5, `logits rel ${relErr(out.logits, f.float("logits"))}`);
      if (f.names().includes("pooler_output")) assert.ok(relErr(out.pooled, f.float("pooler_output")) < 1e-5, "pooler_output");
      const H = model.config.hidden_size;
      const real = (i: number): boolean => ref.input.attentionMask[Math.floor(i / H)] === 1;
      const L = model.config.num_hidden_layers;
      assert.equal(out.hiddenStates!.length, L + 1);
      for (let i = 0; i <= L; i++) {
        const e = relErr(out.hiddenStates![i]!, f.float(`hidden_states.${i}`), real);
        assert.ok(e < 1e-5, `hidden_states.${i} rel ${e}`);
      }
      // The default pass (the last layer on the first token's rows only) gives the same logits.
      const fast = model.forward(ref.input, { train: false });
      assert.ok(relErr(fast.logits, f.float("logits")) < 1e-5, "logits without hidden states");
    } finally {
      f.close();
    }
  });

  test(`[${backend.name}] ${name}: train loss and every gradient match the reference`, () => {
    const ref = familyReference(name);
    const model = loadFamily(name, backend);
    const fwd = SafetensorsFile.open(join(ref.dir, "reference", "forward.safetensors"));
    const grads = SafetensorsFile.open(join(ref.dir, "reference", "grads.safetensors"));
    try {
      const B = ref.input.batch;
      const C = model.config.num_labels;
      const out = model.forward(ref.input, { train: true, dropoutSeed: 1 });
      const { sum, probs } = crossEntropy(backend, "float32", out.logits, ref.labels, B, C);
      assert.ok(Math.abs(sum / B - fwd.float("train_loss")[0]!) < 1e-5, `loss ${sum / B}`);
      model.zeroGrad();
      model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, ref.labels, B, C, 1 / B));
      const zero = new Set(ref.manifest.zero_gradient_params);
      assert.deepEqual(model.params.specs.map((s) => `grad.${s.name}`).sort(), grads.names().sort(), "the same parameters as the reference");
      for (const spec of model.params.specs) {
        const ours = model.params.gradOf(spec.name);
        if (zero.has(spec.name)) {
          assert.ok(maxAbs(ours) < 1e-6, `${spec.name} max ${maxAbs(ours)}`);
          continue;
        }
        const e = relErr(ours, grads.float(`grad.${spec.name}`));
        assert.ok(e < 1e-4, `${spec.name} rel ${e}`);
      }
    } finally {
      fwd.close();
      grads.close();
    }
  });

  for (const strategy of ["full", "head_only"]) {
    test(`[${backend.name}] ${name}: 12-step ${strategy} trajectory matches the reference`, async () => {
      const ref = familyReference(name);
      const { model } = loadModelFromDir(familyDir(name), { backend });
      model.setDropout(0);
      const trainSet = ref.manifest.trajectory.batches.flat().map((i) => ref.rows[i]!);
      const pad = model.config.pad_token_id;
      const trainer = new Trainer(model, familyArgs(ref, strategy), trainSet, null, pad, {});
      const result = await trainer.train();
      const params = new Map(model.params.specs.map((s) => [s.name, model.params.value(s.name)] as const));
      checkFamilyTrajectory(ref, strategy, result.logHistory as StepLog[], params);
    });
  }
}
