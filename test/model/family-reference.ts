/** The family fixtures (test/fixtures/families/README.md): their inputs, and the trajectory check of that README. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { EncodedExample } from "../../src/data/dataset.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { ModelInput } from "../../src/model/task-model.js";
import { DEFAULT_TRAINING_ARGS, type StepLog, type TrainingArgs } from "../../src/train/trainer.js";
import { FIXTURES, maxAbsDiff, relErr } from "../helpers.js";

export const FAMILY_FIXTURES = ["roberta-tiny", "xlm-roberta-tiny", "electra-tiny", "distilbert-tiny", "ernie-tiny", "albert-tiny"];
export const familyDir = (name: string): string => join(FIXTURES, "families", name);

export interface FamilyReference {
  dir: string;
  manifest: {
    zero_gradient_params: string[];
    trajectory: { batches: number[][]; results: Record<string, { base_lr: number; loss: number[]; lr: number[]; grad_norm: number[] }> };
  };
  input: ModelInput;
  labels: Int32Array;
  rows: EncodedExample[];
}

export function familyReference(name: string): FamilyReference {
  const dir = familyDir(name);
  const manifest = JSON.parse(readFileSync(join(dir, "reference", "manifest.json"), "utf8"));
  const f = SafetensorsFile.open(join(dir, "reference", "forward.safetensors"));
  try {
    const [B, T] = f.info("input_ids").shape as [number, number];
    const inputIds = f.int("input_ids");
    const attentionMask = f.int("attention_mask");
    // DistilBERT's inputs have no token types: zeros (the model reads none)
    const tokenTypeIds = f.names().includes("token_type_ids") ? f.int("token_type_ids") : new Int32Array(B * T);
    const labels = f.int("labels");
    const rows = Array.from({ length: B }, (_, i): EncodedExample => ({
      inputIds: [...inputIds.subarray(i * T, i * T + T)], tokenTypeIds: [...tokenTypeIds.subarray(i * T, i * T + T)],
      attentionMask: [...attentionMask.subarray(i * T, i * T + T)], label: labels[i]!,
    }));
    return { dir, manifest, input: { inputIds, attentionMask, tokenTypeIds, batch: B, seqLen: T }, labels, rows };
  } finally {
    f.close();
  }
}

/** Per-step loss, lr and grad_norm, and every parameter after the run (frozen ones bit-identical to the start). */
export function checkFamilyTrajectory(ref: FamilyReference, strategy: string, logs: StepLog[], params: Map<string, ArrayLike<number>>): void {
  const r = ref.manifest.trajectory.results[strategy]!;
  assert.equal(logs.length, 12);
  logs.forEach((l, s) => {
    assert.ok(Math.abs(l.loss - r.loss[s]!) < 1e-5, `step ${s + 1} loss ${l.loss} vs ${r.loss[s]}`);
    assert.equal(l.learning_rate, r.lr[s], `step ${s + 1} lr`);
    assert.ok(Math.abs(l.grad_norm - r.grad_norm[s]!) / r.grad_norm[s]! < 1e-4, `step ${s + 1} grad_norm ${l.grad_norm} vs ${r.grad_norm[s]}`);
  });
  const after = SafetensorsFile.open(join(ref.dir, "reference", `after-${strategy}.safetensors`));
  const start = SafetensorsFile.open(join(ref.dir, "model.safetensors"));
  try {
    const trained = new Set(after.names());
    const zero = new Set(ref.manifest.zero_gradient_params);
    for (const [name, ours] of params) {
      if (!trained.has(name)) {
        assert.deepEqual(Float32Array.from(ours), start.float(name), `${name} must stay bit-identical`);
      } else if (zero.has(name)) {
        assert.ok(maxAbsDiff(ours, after.float(name)) < 1e-3, `${name} max abs diff ${maxAbsDiff(ours, after.float(name))}`);
      } else {
        const e = relErr(ours, after.float(name));
        assert.ok(e < 1e-4, `${name} rel ${e}`);
      }
    }
    assert.deepEqual([...trained].filter((n) => !params.has(n)), [], "every trained reference tensor is a parameter of ours");
  } finally {
    after.close();
    start.close();
  }
}

/** Our training arguments for the manifest's recipe. */
export function familyArgs(ref: FamilyReference, strategy: string): TrainingArgs {
  return {
    ...DEFAULT_TRAINING_ARGS, epochs: 1, batchSize: 4, learningRate: ref.manifest.trajectory.results[strategy]!.base_lr,
    warmupSteps: 3, weightDecay: 0.01, maxGradNorm: 1, shuffle: false, loggingSteps: 1, strategy: strategy === "full" ? "full" : "head",
  };
}

