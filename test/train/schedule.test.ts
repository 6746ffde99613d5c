/**
 * Every --lr-scheduler-type against the learning rates transformers' own get_scheduler produced
 * (test/fixtures/schedules/hf-schedules.json, made by scripts/make-schedule-fixture.py with transformers 5.18), step
 * by step over 25 steps, with and without warmup and with each scheduler's kwargs; and through `weitiao train`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { learningRateAt, type LrScheduler, schedulerKwargs } from "../../src/train/schedule.js";
import { FIXTURES, TINY, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "../cli/cli-helpers.js";

const ref = JSON.parse(readFileSync(join(FIXTURES, "schedules", "hf-schedules.json"), "utf8")) as {
  base_lr: number; total_steps: number; cases: { name: LrScheduler; warmup: number; kwargs: Record<string, number>; lr: number[] }[];
};

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(b), 1e-12);

test("each scheduler gives HF's learning rate at every step (relative 1e-12; linear bit for bit)", () => {
  assert.ok(ref.cases.length >= 15);
  for (const c of ref.cases) {
    const kw = schedulerKwargs(c.name, JSON.stringify(c.kwargs), ref.base_lr);
    c.lr.forEach((want, t) => {
      const got = learningRateAt(c.name, ref.base_lr, t, c.warmup, ref.total_steps, kw);
      assert.ok(c.name === "linear" ? got === want : close(got, want), `${c.name} warmup ${c.warmup} ${JSON.stringify(c.kwargs)} step ${t}: ${got} vs ${want}`);
    });
  }
  // The check can fail: cosine's default half cycle is not a full one.
  const cos = ref.cases.find((c) => c.name === "cosine" && c.warmup === 3)!;
  assert.ok(!close(learningRateAt("cosine", ref.base_lr, 20, 3, 25, { num_cycles: 1 }), cos.lr[20]!));
});

test("--lr_scheduler_type and --lr_scheduler_kwargs as pasted from HF drive weitiao train; bad kwargs are one line", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n好看,1\n无聊,0\n");
  const c = ref.cases.find((x) => x.name === "cosine_with_restarts" && x.warmup === 2)!;
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--batch-size", "2", "--max-steps", String(ref.total_steps),
    "--learning-rate", String(ref.base_lr), "--warmup-steps", String(c.warmup), "--logging-steps", "1",
    "--lr_scheduler_type", c.name, "--lr_scheduler_kwargs", JSON.stringify(c.kwargs), "--precision", "fp32"]);
  assert.equal(r.code, 0, r.stderr);
  const logs = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[]);
  assert.equal(logs.length, ref.total_steps);
  logs.forEach((l, t) => assert.ok(close(l.learning_rate, c.lr[t]!), `step ${t + 1}: ${l.learning_rate} vs ${c.lr[t]}`));
  assert.equal(JSON.parse(readFileSync(join(out, "training_args.json"), "utf8")).lrSchedulerType, "cosine_with_restarts");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--lr-scheduler-type", "cosine", "--lr-scheduler-kwargs", '{"power": 2}']),
    /--lr-scheduler-kwargs: cosine takes num_cycles, not "power"/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "y"), "--lr-scheduler-type", "cosine_with_min_lr"]),
    /cosine_with_min_lr needs exactly one of min_lr and min_lr_rate/);
});
