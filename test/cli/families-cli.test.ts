/**
 * `weitiao train` on each family fixture as a user runs it: a CSV of the manifest's examples in its batch order,
 * the reference recipe as flags, from a fresh folder. The saved trainer_state.json and model.safetensors must
 * reproduce the family's `full` (native backend where built) and `head_only` (TypeScript backend) trajectories, and
 * the output folder must predict with the family's own architecture name in config.json.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors } from "../../src/io/safetensors.js";
import { tempDir } from "../helpers.js";
import { NATIVE } from "../backends.js";
import { checkFamilyTrajectory, familyDir, familyReference, FAMILY_FIXTURES } from "../model/family-reference.js";
import { run } from "./cli-helpers.js";

const csvCell = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

for (const name of FAMILY_FIXTURES) for (const strategy of ["full", "head_only"]) {
  const backend = strategy === "full" && NATIVE ? "native" : "typescript";
  test(`[${backend}] weitiao train reproduces ${name}'s ${strategy} trajectory; the folder predicts`, () => {
    const ref = familyReference(name);
    const manifest = JSON.parse(readFileSync(join(ref.dir, "reference", "manifest.json"), "utf8"));
    const examples = manifest.examples as { text: string; label: number }[];
    const dir = tempDir();
    const file = join(dir, "train.csv");
    const rows = ref.manifest.trajectory.batches.flat().map((i) => `${csvCell(examples[i]!.text)},${examples[i]!.label}`);
    writeFileSync(file, "text,label\n" + rows.join("\n") + "\n");
    const out = join(dir, "out");
    const r = run([
      "train", "--model", familyDir(name), "--train-file", file, "--output-dir", out, "--no-shuffle", "--dropout", "0",
      "--batch-size", "4", "--epochs", "1", "--warmup-steps", "3", "--weight-decay", "0.01", "--max-grad-norm", "1.0",
      "--logging-steps", "1", "--max-length", "32", "--learning-rate", String(ref.manifest.trajectory.results[strategy]!.base_lr),
      "--strategy", strategy === "full" ? "full" : "head", "--backend", backend,
    ], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
    const saved = readSafetensors(join(out, "model.safetensors"));
    checkFamilyTrajectory(ref, strategy, state.log_history, new Map([...saved].map(([k, v]) => [k, v.data])));
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    const original = JSON.parse(readFileSync(join(ref.dir, "config.json"), "utf8"));
    assert.deepEqual(config.architectures, original.architectures);
    assert.equal(config.model_type, original.model_type);
    const p = run(["predict", "--model", out, "--text", examples[0]!.text, "--backend", backend], { cwd: dir });
    assert.equal(p.code, 0, p.stderr);
    assert.ok(Object.values(original.id2label).includes(JSON.parse(p.stdout).label), p.stdout);
  });
}
