/**
 * The option table (src/train/options.ts) is the one source: every declared option is a `train` flag with its help
 * and default, its HF spellings work, the API refuses what the table refuses with the same message, and
 * training_args.json holds every option.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { COMPUTE_OPTIONS, FLAG_ALIASES, hfArgName, type OptionSpec, TRAIN_OPTIONS } from "../../src/train/options.js";
import { train } from "../../src/api/train.js";
import { normalizeArgv } from "../../src/cli/main.js";
import { ROOT, TINY, tempDir } from "../helpers.js";
import { run } from "../cli/cli-helpers.js";

const ALL: readonly OptionSpec[] = [...TRAIN_OPTIONS, ...COMPUTE_OPTIONS];

test("every declared option is a train flag, with its help text and default", () => {
  const help = run(["train", "--help"]).stdout.replace(/\s+/g, " ");
  for (const s of ALL) {
    assert.ok(help.includes(s.arg ? `${s.flag} ${s.arg}` : s.flag), s.flag);
    assert.ok(help.includes(s.help.split(" ").slice(0, 4).join(" ")), `${s.flag}: help`);
    if (s.default !== undefined && s.type !== "bool") assert.ok(help.includes(`default: ${typeof s.default === "string" ? `"${s.default}"` : s.default}`), `${s.flag}: default`);
  }
});

test("HF TrainingArguments spellings map to the declared flags, underscores or dashes", () => {
  assert.equal(FLAG_ALIASES["--num-train-epochs"], "--epochs");
  assert.deepEqual(normalizeArgv(["train", "--num_train_epochs", "2", "--per_device_train_batch_size=8", "--evaluation_strategy", "no", "--lr", "1e-3"]),
    ["train", "--epochs", "2", "--batch-size=8", "--eval-strategy", "no", "--learning-rate", "1e-3"]);
  for (const s of ALL) for (const a of s.aliases ?? []) assert.equal(normalizeArgv([`--${a.replace(/-/g, "_")}`])[0], s.flag);
});

test("the API refuses what the table refuses, naming the flag", async () => {
  const dir = tempDir();
  const file = join(dir, "t.csv");
  writeFileSync(file, "text,label\n好,1\n差,0\n");
  const base = { model: TINY, trainFile: file, outputDir: join(dir, "out") };
  for (const [bad, message] of [
    [{ batchSize: 0 }, /--batch-size must be a positive integer, got 0/],
    [{ learningRate: Number.NaN }, /--learning-rate must be a number, got NaN/],
    [{ warmupRatio: 1 }, /--warmup-ratio must be in \[0, 1\), got 1/],
    [{ strategy: "everything" }, /--strategy must be one of full, head, top-k, gradual, lora, got everything/],
    [{ shuffle: "yes" }, /--shuffle must be true or false/],
    [{ threads: 0 }, /--threads must be a positive integer/],
  ] as const) {
    await assert.rejects(train({ ...base, ...(bad as object) }), message);
  }
});

test("training_args.json holds every declared option as the run resolved it", () => {
  const dir = tempDir();
  const file = join(dir, "t.csv");
  writeFileSync(file, "text,label\n好,1\n差,0\n");
  const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "out"), "--epochs", "1", "--max-length", "16", "--seed", "7"]);
  assert.equal(r.code, 0, r.stderr);
  const args = JSON.parse(readFileSync(join(dir, "out", "training_args.json"), "utf8"));
  for (const s of ALL) if (s.key !== "resumeFromCheckpoint") assert.ok(hfArgName(s.key) in args, s.key);
  assert.equal(args.seed, 7);
  assert.equal(args.problem_type, "single_label_classification");
  assert.equal("resume_from_checkpoint" in args, false, "a re-run from this file must not resume");
  // HF's names where HF has one (TrainingArguments fields, example-script arguments), snake_case otherwise
  for (const k of ["learning_rate", "num_train_epochs", "per_device_train_batch_size", "max_seq_length", "output_dir", "model_name_or_path", "train_file", "lr_scheduler_type", "strategy"]) assert.ok(k in args, k);
  assert.equal(args.weitiao, JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
});
