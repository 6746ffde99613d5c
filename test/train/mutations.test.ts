/**
 * The parity checks must be able to fail: each deliberate bug below has to break them
 * (PROVENANCE.md: "These checks are meaningful only if they can fail").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { Trainer, type StepLog } from "../../src/train/trainer.js";
import { HF, TINY, referenceData, relErr } from "../helpers.js";
import { checkTrajectory, trajectoryArgs, trajectoryTrainSet } from "./trajectory-check.js";

async function runFull(mutate: { dropout?: number; noDecay?: (n: string) => boolean }): Promise<() => void> {
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  model.setDropout(mutate.dropout ?? 0);
  const trainer = new Trainer(model, trajectoryArgs(HF, "full"), trajectoryTrainSet(HF), null, 0, {}, mutate.noDecay ? { noDecay: mutate.noDecay } : {});
  const result = await trainer.train();
  const params = new Map(model.params.specs.map((s) => [s.name, model.params.value(s.name)]));
  return () => checkTrajectory(HF, "full", result.logHistory as StepLog[], params);
}

test("the unmutated run passes (control)", async () => {
  (await runFull({}))();
});

test("mutation: weight decay on biases and LayerNorm is caught by the trajectory check", async () => {
  assert.throws(await runFull({ noDecay: () => false }), /grad_norm|loss|rel|max abs diff/);
});

test("mutation: dropout left on is caught by the trajectory check", async () => {
  assert.throws(await runFull({ dropout: 0.1 }), /loss|grad_norm|rel/);
});

test("mutation: LayerNorm eps 1e-5 is caught by the forward (hidden-state) check", async () => {
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  model.config.layer_norm_eps = 1e-5;
  const { input } = referenceData(HF);
  const out = model.forward(input, { train: false, outputHiddenStates: true });
  const ref = SafetensorsFile.open(join(HF, "forward.safetensors"));
  const H = model.config.hidden_size;
  const e = relErr(out.hiddenStates![0]!, ref.float("hidden_states.0"), (j) => input.attentionMask[Math.floor(j / H)] === 1);
  ref.close();
  assert.ok(e >= 1e-5, `embedding output rel error ${e} should exceed the 1e-5 tolerance`);
});
