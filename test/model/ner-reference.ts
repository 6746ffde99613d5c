/** The NER fixture (test/fixtures/ner/bert-tiny-chinese-ner/README.md): its manifest and the trajectory check of that README. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { StepLog } from "../../src/train/trainer.js";
import { FIXTURES, maxAbsDiff, relErr } from "../helpers.js";

export const NER_DIR = join(FIXTURES, "ner", "bert-tiny-chinese-ner");
export const nerManifest = JSON.parse(readFileSync(join(NER_DIR, "reference", "manifest.json"), "utf8")) as {
  examples: { tokens: string[]; ner_tags: string[] }[];
  trajectory: { batches: number[][]; results: Record<string, { base_lr: number; loss: number[]; lr: number[]; grad_norm: number[] }> };
};

/** Per-step loss, lr and grad_norm within the README's tolerances; parameters after the run, frozen ones bit-identical. */
export function checkNerTrajectory(strategy: string, logs: StepLog[], params: Map<string, ArrayLike<number>>): void {
  const r = nerManifest.trajectory.results[strategy]!;
  assert.equal(logs.length, 12);
  logs.forEach((l, s) => {
    assert.ok(Math.abs(l.loss - r.loss[s]!) < 1e-5, `step ${s + 1} loss ${l.loss} vs ${r.loss[s]}`);
    assert.equal(l.learning_rate, r.lr[s], `step ${s + 1} lr`);
    assert.ok(Math.abs(l.grad_norm - r.grad_norm[s]!) / r.grad_norm[s]! < 1e-4, `step ${s + 1} grad_norm ${l.grad_norm} vs ${r.grad_norm[s]}`);
  });
  const after = SafetensorsFile.open(join(NER_DIR, "reference", `after-${strategy}.safetensors`));
  const start = SafetensorsFile.open(join(NER_DIR, "model", "model.safetensors"));
  try {
    const trained = new Set(after.names());
    for (const [name, ours] of params) {
      if (!trained.has(name)) {
        assert.deepEqual(Float32Array.from(ours), start.float(name), `${name} frozen: bit-identical`);
      } else if (name.endsWith("attention.self.key.bias")) {
        assert.ok(maxAbsDiff(ours, after.float(name)) < 5e-4, name);
      } else {
        const e = relErr(ours, after.float(name));
        assert.ok(e < 1e-4, `${name} rel ${e}`);
      }
    }
  } finally {
    after.close();
    start.close();
  }
}
