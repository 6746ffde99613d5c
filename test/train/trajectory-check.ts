/** Shared checks of a 12-step run against a reference trajectory (PROVENANCE.md, "How to compare"). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { EncodedExample } from "../../src/data/dataset.js";
import { DEFAULT_TRAINING_ARGS, type StepLog, type TrainingArgs } from "../../src/train/trainer.js";
import { TINY, maxAbsDiff, referenceData, relErr } from "../helpers.js";

/** The 48 examples of a reference trajectory in step order (the manifest's batches of 4). */
export function trajectoryTrainSet(dir: string): EncodedExample[] {
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const { rows } = referenceData(dir);
  return (manifest.trajectory.batches as number[][]).flat().map((i) => rows[i]!);
}

/** The reference recipe (manifest.trajectory) as training arguments, for one reference strategy. */
export function trajectoryArgs(dir: string, refName: string): TrainingArgs {
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  return {
    ...DEFAULT_TRAINING_ARGS, epochs: 1, batchSize: 4, learningRate: manifest.trajectory.results[refName].base_lr,
    warmupSteps: 3, weightDecay: 0.01, maxGradNorm: 1, shuffle: false, loggingSteps: 1, ...STRATEGY_ARGS[refName],
  };
}

/** Reference strategy name → our training arguments. */
export const STRATEGY_ARGS: Record<string, Partial<TrainingArgs>> = {
  full: { strategy: "full" },
  head_only: { strategy: "head" },
  top_layer: { strategy: "top-k", topK: 1 },
};

export function checkTrajectory(dir: string, refName: string, logs: StepLog[], params: Map<string, ArrayLike<number>>): void {
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const ref = manifest.trajectory.results[refName];
  assert.equal(logs.length, 12, "one log entry per step");
  logs.forEach((l, s) => {
    assert.equal(l.step, s + 1);
    assert.ok(Math.abs(l.loss - ref.loss[s]) < 1e-5, `step ${s + 1} loss ${l.loss} vs ${ref.loss[s]}`);
    assert.equal(l.learning_rate, ref.lr[s], `step ${s + 1} lr`);
    assert.ok(Math.abs(l.grad_norm - ref.grad_norm[s]) / ref.grad_norm[s] < 1e-4, `step ${s + 1} grad_norm ${l.grad_norm} vs ${ref.grad_norm[s]}`);
  });
  const after = SafetensorsFile.open(join(dir, `after-${refName}.safetensors`));
  const start = SafetensorsFile.open(join(TINY, "model.safetensors"));
  const trained = new Set(after.names());
  for (const [name, ours] of params) {
    if (trained.has(name)) {
      const refValue = after.float(name);
      if (name.endsWith("attention.self.key.bias")) {
        assert.ok(maxAbsDiff(ours, refValue) < 5e-4, `${name} max abs diff ${maxAbsDiff(ours, refValue)}`);
      } else {
        const e = relErr(ours, refValue);
        assert.ok(e < 1e-4, `${name} rel ${e}`);
      }
    } else {
      // Frozen: bit-identical to the starting checkpoint.
      assert.deepEqual(Float32Array.from(ours), start.float(name), `${name} must stay bit-identical`);
    }
  }
  after.close();
  start.close();
}
