/**
 * The 12-step AdamW trajectories of both reference sets, run through the Trainer API on the references' own
 * input ids (the hf-transformers set has raw ids, so it cannot go through the tokenizer).
 */
import { test } from "node:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BACKENDS } from "../backends.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { DEFAULT_TRAINING_ARGS, Trainer, type StepLog } from "../../src/train/trainer.js";

import { HF, REAL, TINY } from "../helpers.js";
import { checkTrajectory, STRATEGY_ARGS } from "./trajectory-check.js";

for (const backend of BACKENDS) for (const [setName, dir] of [["hf-transformers", HF], ["real-tokens", REAL]] as const) {
  for (const [refName, strategyArgs] of Object.entries(STRATEGY_ARGS)) {
    test(`[${backend.name}] ${setName}: 12-step ${refName} trajectory through the Trainer API`, async () => {
      const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
      const fwd = SafetensorsFile.open(join(dir, "forward.safetensors"));
      const [, T] = fwd.info("input_ids").shape as [number, number];
      const ids = fwd.int("input_ids");
      const mask = fwd.int("attention_mask");
      const types = fwd.int("token_type_ids");
      const labels = fwd.int("labels");
      fwd.close();
      const row = (i: number): EncodedExample => ({
        inputIds: [...ids.subarray(i * T, i * T + T)],
        tokenTypeIds: [...types.subarray(i * T, i * T + T)],
        attentionMask: [...mask.subarray(i * T, i * T + T)],
        label: labels[i]!,
      });
      const trainSet = (manifest.trajectory.batches as number[][]).flat().map(row);
      const ref = manifest.trajectory.results[refName];
      const { model } = loadModelFromDir(TINY, { backend });
      model.setDropout(0);
      const trainer = new Trainer(model, {
        ...DEFAULT_TRAINING_ARGS, epochs: 1, batchSize: 4, learningRate: ref.base_lr, warmupSteps: 3,
        weightDecay: 0.01, maxGradNorm: 1, shuffle: false, loggingSteps: 1, ...strategyArgs,
      }, trainSet, null, 0);
      const result = await trainer.train();
      const params = new Map(model.params.specs.map((s) => [s.name, model.params.value(s.name)]));
      checkTrajectory(dir, refName, result.logHistory as StepLog[], params);
    });
  }
}

