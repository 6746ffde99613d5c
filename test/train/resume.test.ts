/** Checkpoints and exact resume: an interrupted-then-resumed run ends bit for bit where an uninterrupted one does. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { train, type TrainOptions } from "../../src/api/train.js";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { CLI, TINY, tempDir } from "../helpers.js";
import { runUntil } from "../cli/cli-helpers.js";

const base = (outputDir: string): TrainOptions => ({
  model: TINY, trainFile: join(DEMO_DATA_DIR, "train.csv"), outputDir, epochs: 2, batchSize: 16, maxLength: 32,
  learningRate: 1e-3, warmupRatio: 0.1, weightDecay: 0.01, gradientAccumulationSteps: 2, loggingSteps: 1, seed: 7,
  backend: "typescript",
});

test("interrupt at a step, resume from its checkpoint: same weights and log as an uninterrupted run", async () => {
  const full = join(tempDir(), "full");
  await train(base(full));
  for (const stopAt of [3, 13]) { // mid-epoch 1, and mid-epoch 2 (13 steps per epoch)
    const out = join(tempDir(), "resumed");
    const stop = new AbortController();
    const first = await train({ ...base(out), signal: stop.signal, hooks: { onStep: ({ step }) => void (step === stopAt && stop.abort()) } });
    assert.ok(first.interruptedAt, "the run reports where it stopped");
    assert.equal(first.result.globalStep, stopAt);
    assert.ok(existsSync(join(out, `checkpoint-${stopAt}`, "optimizer.safetensors")));
    assert.ok(!existsSync(join(out, "model.safetensors")), "an interrupted run writes only its checkpoint");
    await train({ ...base(out), resumeFromCheckpoint: "latest" });
    assert.deepEqual(readFileSync(join(out, "model.safetensors")), readFileSync(join(full, "model.safetensors")), `stop at ${stopAt}: weights bit-identical`);
    // The closing summary's timings differ between runs; its train_loss (the whole run's mean) must not.
    const logs = (d: string) => (JSON.parse(readFileSync(join(d, "trainer_state.json"), "utf8")).log_history as Record<string, number>[])
      .map(({ train_runtime: _r, train_samples_per_second: _s, train_steps_per_second: _t, ...rest }) => rest);
    assert.deepEqual(logs(out), logs(full));
  }
});

test("--save-steps with --save-total-limit keeps the newest checkpoints, each a loadable model folder", async () => {
  const out = join(tempDir(), "ckpt");
  await train({ ...base(out), epochs: 1, saveSteps: 4, saveStrategy: "steps", saveTotalLimit: 2 });
  const dirs = readdirSync(out).filter((d) => d.startsWith("checkpoint-")).sort();
  assert.deepEqual(dirs, ["checkpoint-12", "checkpoint-8"]);
  for (const f of ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "vocab.txt"]) {
    assert.ok(existsSync(join(out, "checkpoint-12", f)), f);
  }
  assert.ok(!readdirSync(out).some((d) => d.includes(".tmp-")), "no temporary folders left");
  const p = spawnSync(process.execPath, [CLI, "predict", "--model", join(out, "checkpoint-12"), "--text", "好"], { encoding: "utf8" });
  assert.equal(p.status, 0, p.stderr);
});

test("SIGINT during weitiao train: finishes the step, writes a checkpoint, exits 130 saying how to resume; the resumed run matches", async () => {
  const dir = tempDir();
  const args = (out: string) => ["train", "--model", TINY, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--output-dir", out,
    "--epochs", "3", "--batch-size", "8", "--max-length", "32", "--learning-rate", "1e-3", "--logging-steps", "1", "--seed", "5",
    "--backend", "typescript"];
  const ref = join(dir, "ref");
  assert.equal(spawnSync(process.execPath, [CLI, ...args(ref)], { encoding: "utf8" }).status, 0);
  const out = join(dir, "out");
  const { code, stderr } = await runUntil(args(out), /step 5\/150/, "SIGINT");
  assert.equal(code, 130, stderr);
  assert.match(stderr, /resume with: weitiao train <same options> --resume-from-checkpoint .*checkpoint-\d+/);
  const resumed = spawnSync(process.execPath, [CLI, ...args(out), "--resume-from-checkpoint", "latest"], { encoding: "utf8" });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.deepEqual(readFileSync(join(out, "model.safetensors")), readFileSync(join(ref, "model.safetensors")));
});
