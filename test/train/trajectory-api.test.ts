/**
 * The 12-step AdamW trajectories of both reference sets, run through the Trainer API on the references' own
 * input ids (the hf-transformers set has raw ids, so it cannot go through the tokenizer).
 */
import { test } from "node:test";
import { BACKENDS } from "../backends.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { Trainer, type StepLog } from "../../src/train/trainer.js";
import { HF, REAL, TINY } from "../helpers.js";
import { checkTrajectory, STRATEGY_ARGS, trajectoryArgs, trajectoryTrainSet } from "./trajectory-check.js";

for (const backend of BACKENDS) for (const [setName, dir] of [["hf-transformers", HF], ["real-tokens", REAL]] as const) {
  for (const refName of Object.keys(STRATEGY_ARGS)) {
    test(`[${backend.name}] ${setName}: 12-step ${refName} trajectory through the Trainer API`, async () => {
      const { model } = loadModelFromDir(TINY, { backend });
      model.setDropout(0);
      const trainer = new Trainer(model, trajectoryArgs(dir, refName), trajectoryTrainSet(dir), null, 0);
      const result = await trainer.train();
      const params = new Map(model.params.specs.map((s) => [s.name, model.params.value(s.name)]));
      checkTrajectory(dir, refName, result.logHistory as StepLog[], params);
    });
  }
}
