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
import { TINY, tempDir } from "../helpers.js";
import { NATIVE } from "../backends.js";
import { checkFamilyTrajectory, familyDir, familyReference, FAMILY_FIXTURES } from "../model/family-reference.js";
import { stepLogs } from "../helpers.js";
import { assertOneLineError, craftModel, run } from "./cli-helpers.js";

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
    checkFamilyTrajectory(ref, strategy, stepLogs(state.log_history), new Map([...saved].map(([k, v]) => [k, v.data])));
    const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    const original = JSON.parse(readFileSync(join(ref.dir, "config.json"), "utf8"));
    assert.deepEqual(config.architectures, original.architectures);
    assert.equal(config.model_type, original.model_type);
    const p = run(["predict", "--model", out, "--text", examples[0]!.text, "--backend", backend], { cwd: dir });
    assert.equal(p.code, 0, p.stderr);
    assert.ok(Object.values(original.id2label).includes(JSON.parse(p.stdout).label), p.stdout);
  });
}

test("strategies that freeze by depth are refused on ALBERT's shared layer; full and head run", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n");
  for (const flags of [["--strategy", "top-k", "--top-k", "1"], ["--strategy", "gradual"], ["--layer-lr-decay", "0.9"]]) {
    const r = run(["train", "--model", familyDir("albert-tiny"), "--train-file", file, "--output-dir", join(dir, "out"), ...flags]);
    assertOneLineError(r, /freezes or scales layers by depth, but this model's 3 layers share 1 parameter group\(s\) \(ALBERT\): use --strategy full or head/);
  }
  const ok = run(["train", "--model", familyDir("albert-tiny"), "--train-file", file, "--output-dir", join(dir, "out"), "--strategy", "head", "--epochs", "1"]);
  assert.equal(ok.code, 0, ok.stderr);
});

test("--task: a folder fine-tuned for another task is recognised and refused; --task text-classification puts a new head on it", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n");
  const qa = craftModel({ architectures: ["BertForQuestionAnswering"] });
  assertOneLineError(run(["train", "--model", qa, "--train-file", file, "--output-dir", join(dir, "a")]),
    /architectures \(BertForQuestionAnswering\) imply question-answering, which is not supported yet: .*pass --task text-classification/);
  assertOneLineError(run(["predict", "--model", qa, "--text", "很好"]), /imply question-answering, which is not supported yet/);
  // A token-classification folder implies that task: CSV text/label rows are not its data.
  const ner = craftModel({ architectures: ["BertForTokenClassification"] });
  assertOneLineError(run(["train", "--model", ner, "--train-file", file, "--output-dir", join(dir, "n")]), /token-classification data is JSONL/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "b"), "--task", "question-answering"]), /--task question-answering is not supported yet/);
  const ok = run(["train", "--model", qa, "--train-file", file, "--output-dir", join(dir, "c"), "--task", "text-classification", "--epochs", "1"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "c", "config.json"), "utf8")).architectures, ["BertForSequenceClassification"]);
  assert.equal(JSON.parse(readFileSync(join(dir, "c", "training_args.json"), "utf8")).task, "text-classification");
  // A pretraining checkpoint (bert-base-chinese ships BertForMaskedLM) never implies fill-mask.
  const mlm = craftModel({ architectures: ["BertForMaskedLM"] });
  assert.equal(run(["train", "--model", mlm, "--train-file", file, "--output-dir", join(dir, "d"), "--epochs", "1"]).code, 0);
});
