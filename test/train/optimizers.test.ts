/**
 * --optim sgd|adagrad|rmsprop|adafactor against torch.optim and transformers' Adafactor themselves
 * (test/fixtures/optimizers/torch-optimizers.json, made by scripts/make-optimizer-fixture.py with torch 2.13 and
 * transformers 5.18): a matrix with weight decay and a bias without, 6 updates each, every --optim-args key; and
 * through weitiao train, with checkpoints that hold the optimizer's state and refuse another one on resume.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type OptimizerName, parseOptimArgs, UPDATES } from "../../src/train/optimizers.js";
import { FIXTURES, TINY, relErr, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "../cli/cli-helpers.js";

const ref = JSON.parse(readFileSync(join(FIXTURES, "optimizers", "torch-optimizers.json"), "utf8")) as {
  lr: number; weight_decay: number; w0: number[]; b0: number[]; grads: [number[], number[]][];
  cases: { optim: Exclude<OptimizerName, "adamw_torch" | "adamw_torch_fused">; args: Record<string, number | boolean>; after: [number[], number[]][] }[];
};

/** Our updates of the fixture's two parameters, the parameters after each step. */
function ours(c: (typeof ref.cases)[number], mutate = false): [number[], number[]][] {
  const spec = Object.entries(c.args).map(([k, v]) => `${k}=${v}`).join(",");
  const args = parseOptimArgs(c.optim, spec);
  const params = [{ p: Float32Array.from(ref.w0), shape: [3, 4], wd: ref.weight_decay }, { p: Float32Array.from(ref.b0), shape: [5], wd: 0 }];
  const state = params.map((x) => ({ a: new Float32Array(x.p.length), b: new Float32Array(x.p.length), c: new Float32Array(x.p.length) }));
  return ref.grads.map((gs, s) => params.map((x, k) => {
    UPDATES[c.optim]({
      p: x.p, g: Float32Array.from(gs[k]!), gradScale: 1, ...state[k]!, shape: x.shape, lr: ref.lr,
      weightDecay: mutate ? 0 : x.wd, step: s + 1, args,
    });
    return [...x.p];
  }) as [number[], number[]]);
}

test("each optimizer's parameters after every update equal torch's (relative 1e-6), every --optim-args key", () => {
  assert.equal(ref.cases.length, 10);
  for (const c of ref.cases) {
    const got = ours(c);
    c.after.forEach((want, s) => {
      for (const k of [0, 1]) {
        const e = relErr(got[s]![k]!, want[k]!);
        assert.ok(e < 1e-6, `${c.optim} ${JSON.stringify(c.args)} step ${s + 1} ${k ? "bias" : "matrix"}: rel ${e}`);
      }
    });
  }
  // The check can fail: without the coupled weight decay the matrix drifts from torch's
  const sgd = ref.cases.find((c) => c.optim === "sgd" && c.args.momentum === 0.9 && !c.args.nesterov)!;
  assert.ok(relErr(ours(sgd, true)[5]![0]!, sgd.after[5]![0]!) > 1e-4);
});

test("Adafactor on a matrix of one row (a regression head's [1, H]) stays finite and factors as transformers' does", () => {
  // row and column second moments for [1, C]: R + C values, more than the matrix has
  const p = Float32Array.from({ length: 8 }, (_, i) => 0.1 * (i - 4));
  const g = Float32Array.from({ length: 8 }, (_, i) => 0.05 * (i + 1));
  const a = new Float32Array(8), b = new Float32Array(8);
  UPDATES.adafactor({ p, g, gradScale: 1, a, b, c: null, shape: [1, 8], lr: 0.01, weightDecay: 0, step: 1, args: {} });
  assert.ok(p.every(Number.isFinite), `${[...p]}`);
  // one row: the row factor is 1, so each value moves by lr · clip(g / √(col)) with col = (1 − β) · g² at step 1
  const beta2t = 1 - 1 ** -0.8;
  const upd = [...g].map((x) => x / Math.sqrt((1 - beta2t) * (x * x + 1e-30)));
  const rms = Math.sqrt(upd.reduce((s, x) => s + x * x, 0) / 8);
  [...p].forEach((v, i) => assert.ok(Math.abs(v - (0.1 * (i - 4) - 0.01 * upd[i]! / Math.max(1, rms))) < 1e-7));
});

test("--optim-args is read as HF reads it; unknown keys and bad values are one clear error", () => {
  assert.deepEqual(parseOptimArgs("sgd", "momentum=0.9, nesterov=True"), { momentum: 0.9, nesterov: true });
  assert.deepEqual(parseOptimArgs("rmsprop", "centered=1,alpha=0.9"), { centered: true, alpha: 0.9 });
  assert.throws(() => parseOptimArgs("sgd", "beta1=0.9"), /sgd reads momentum, dampening, weight_decay, nesterov, not "beta1"/);
  assert.throws(() => parseOptimArgs("adagrad", "eps=tiny"), /eps must be a number/);
  assert.throws(() => parseOptimArgs("sgd", "nesterov=true"), /nesterov needs a momentum/);
  assert.throws(() => parseOptimArgs("adafactor", "x=1"), /adafactor reads no arguments/);
});

test("--optim and --optim_args through weitiao train: the loss falls, the card and training_args name them, resume checks the optimizer", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n好看,1\n无聊,0\n");
  for (const [optim, extra] of [["sgd", ["--optim_args", "momentum=0.9"]], ["adagrad", []], ["rmsprop", ["--optim_args", "centered=True"]], ["adafactor", []]] as const) {
    const out = join(dir, optim);
    const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--batch-size", "6", "--max-steps", "8", "--logging-steps", "1",
      "--learning-rate", optim === "sgd" ? "0.5" : optim === "rmsprop" ? "1e-3" : "0.01", "--dropout", "0", "--optim", optim, ...extra, "--save-steps", "4"]);
    assert.equal(r.code, 0, `${optim}: ${r.stderr}`);
    const losses = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[]).map((l) => l.loss);
    assert.ok(losses.at(-1)! < losses[0]!, `${optim}: the loss falls (${losses[0]} → ${losses.at(-1)})`);
    assert.equal(JSON.parse(readFileSync(join(out, "training_args.json"), "utf8")).optim, optim);
    assert.match(readFileSync(join(out, "README.md"), "utf8"), new RegExp(`- optimizer: ${optim}`));
  }
  // a checkpoint of one optimizer does not resume another; the same one resumes bit for bit
  const out = join(dir, "sgd");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--batch-size", "6", "--max-steps", "8", "--optim", "adagrad", "--resume-from-checkpoint", join(out, "checkpoint-4")]),
    /the checkpoint's optimizer state is sgd's, not adagrad's: resume with --optim sgd/);
  const whole = readFileSync(join(out, "model.safetensors"));
  const again = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--batch-size", "6", "--max-steps", "8", "--logging-steps", "1", "--learning-rate", "0.5", "--dropout", "0",
    "--optim", "sgd", "--optim_args", "momentum=0.9", "--save-steps", "4", "--resume-from-checkpoint", join(out, "checkpoint-4")]);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(readFileSync(join(out, "model.safetensors")).equals(whole), "resumed SGD with momentum ends where the whole run did");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--optim", "lion"]), /argument 'lion' is invalid. Allowed choices are adamw_torch, adamw_torch_fused, sgd, adagrad, rmsprop, adafactor/);
});
