/**
 * Every --lr-scheduler-type against the learning rates transformers' own get_scheduler produced
 * (test/fixtures/schedules/hf-schedules.json, made by scripts/make-schedule-fixture.py with transformers 5.18), step
 * by step over 25 steps, with and without warmup and with each scheduler's kwargs; and through `weitiao train`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { learningRateAt, type LrScheduler, plateauStart, plateauStep, schedulerKwargs } from "../../src/train/schedule.js";
import { FIXTURES, TINY, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "../cli/cli-helpers.js";

const ref = JSON.parse(readFileSync(join(FIXTURES, "schedules", "hf-schedules.json"), "utf8")) as {
  base_lr: number; total_steps: number; cases: { name: LrScheduler; warmup: number; kwargs: Record<string, number>; lr: number[] }[];
  plateau: { metrics: number[]; cases: { kwargs: Record<string, number | string>; lr: number[] }[] };
};

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(b), 1e-12);

test("each scheduler gives HF's learning rate at every step (relative 1e-12; linear bit for bit)", () => {
  assert.ok(ref.cases.length >= 20);
  assert.ok(ref.cases.filter((c) => c.name === "warmup_stable_decay").length >= 5);
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

test("reduce_lr_on_plateau: torch's ReduceLROnPlateau stepped with each evaluation's metric, every kwarg (mode, factor, patience, threshold, cooldown, min_lr, eps)", () => {
  assert.ok(ref.plateau.cases.length >= 6);
  for (const c of ref.plateau.cases) {
    const kw = schedulerKwargs("reduce_lr_on_plateau", JSON.stringify(c.kwargs), ref.base_lr);
    let s = plateauStart(ref.base_lr);
    const lrs = [s.lr];
    for (const m of ref.plateau.metrics) lrs.push((s = plateauStep(s, m, kw)).lr);
    lrs.forEach((got, i) => assert.ok(close(got, c.lr[i]!), `${JSON.stringify(c.kwargs)} after ${i} evaluations: ${got} vs ${c.lr[i]}`));
  }
  // The check can fail: patience counted one too early
  const p2 = ref.plateau.cases.find((c) => JSON.stringify(c.kwargs) === '{"patience":2}')!;
  let s = plateauStart(ref.base_lr);
  const early = ref.plateau.metrics.map((m) => (s = plateauStep(s, m, { patience: 1 })).lr);
  assert.notDeepEqual(early, p2.lr.slice(1));
});

test("reduce_lr_on_plateau and warmup_stable_decay through weitiao train; their errors are one line", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n好看,1\n无聊,0\n");
  const out = join(dir, "plateau");
  const r = run(["train", "--model", TINY, "--train-file", file, "--validation-file", file, "--output-dir", out, "--batch-size", "2", "--epochs", "6",
    "--learning-rate", "1e-3", "--logging-steps", "1", "--lr_scheduler_type", "reduce_lr_on_plateau", "--lr_scheduler_kwargs", '{"patience": 0, "factor": 0.5, "threshold": 10}', "--precision", "fp32"]);
  assert.equal(r.code, 0, r.stderr);
  const logs = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[]);
  // threshold 10 (relative): no evaluation counts as better than the first, so each later one halves the lr; epochs
  // 1 and 2 train at the base (the first evaluation sets the best), epochs 3…6 at half the one before
  assert.deepEqual(logs.map((l) => l.learning_rate), [1, 1, 2, 4, 8, 16].flatMap((d) => [1e-3 / d, 1e-3 / d, 1e-3 / d]));
  const wsd = ref.cases.find((c) => c.name === "warmup_stable_decay" && c.warmup === 4)!;
  const out2 = join(dir, "wsd");
  const w = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out2, "--batch-size", "2", "--max-steps", String(ref.total_steps),
    "--learning-rate", String(ref.base_lr), "--warmup-steps", String(wsd.warmup), "--logging-steps", "1", "--lr_scheduler_type", "warmup_stable_decay",
    "--lr_scheduler_kwargs", JSON.stringify(wsd.kwargs), "--precision", "fp32"]);
  assert.equal(w.code, 0, w.stderr);
  const wl = stepLogs(JSON.parse(readFileSync(join(out2, "trainer_state.json"), "utf8")).log_history as Record<string, number>[]);
  wl.forEach((l, t) => assert.ok(close(l.learning_rate, wsd.lr[t]!), `wsd step ${t + 1}: ${l.learning_rate} vs ${wsd.lr[t]}`));
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--lr-scheduler-type", "reduce_lr_on_plateau"]), /reduce_lr_on_plateau .* needs validation data/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "y"), "--lr-scheduler-type", "warmup_stable_decay"]), /warmup_stable_decay needs num_decay_steps/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "z"), "--lr-scheduler-type", "warmup_stable_decay", "--lr-scheduler-kwargs", '{"num_decay_steps": 3, "decay_type": "exp"}']),
    /decay_type must be one of "linear", "cosine", "1-sqrt", got "exp"/);
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
  assert.equal(JSON.parse(readFileSync(join(out, "training_args.json"), "utf8")).lr_scheduler_type, "cosine_with_restarts");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--lr-scheduler-type", "cosine", "--lr-scheduler-kwargs", '{"power": 2}']),
    /--lr-scheduler-kwargs: cosine takes num_cycles, not "power"/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "y"), "--lr-scheduler-type", "cosine_with_min_lr"]),
    /cosine_with_min_lr needs exactly one of min_lr and min_lr_rate/);
});
