/** Shared checks of a 12-step run against a reference trajectory (PROVENANCE.md, "How to compare"). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { StepLog } from "../../src/train/trainer.js";
import type { TrainingArgs } from "../../src/train/trainer.js";
import { TINY, maxAbsDiff, relErr } from "../helpers.js";

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
