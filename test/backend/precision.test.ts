/**
 * --precision auto (train's default): a calibration GEMM decides bf16 or fp32 for this CPU, says so, records the
 * choice in training_args.json and caches it; WEITIAO_AUTO_PRECISION pins it; LoRA stays in fp32.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NATIVE_BF16 } from "../backends.js";
import { TINY, tempDir } from "../helpers.js";
import { run } from "../cli/cli-helpers.js";

test("train's default precision is auto: calibrated once per machine, logged with its reason, recorded, cached; pinned by WEITIAO_AUTO_PRECISION", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n");
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: join(dir, "cache") };
  delete env.WEITIAO_AUTO_PRECISION;
  const args = (out: string): string[] => ["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, out), "--max-steps", "1", "--batch-size", "2"];
  const first = run(args("a"), { env });
  assert.equal(first.code, 0, first.stderr);
  const m = /precision auto: (bf16|fp32) \((.*)\)/.exec(first.stderr);
  assert.ok(m, first.stderr);
  if (NATIVE_BF16) assert.match(m[2]!, /a calibration GEMM ran .* in bf16 than in fp32 on this CPU/);
  else assert.match(m[2]!, /no bf16 GEMMs|no native backend/);
  assert.equal(JSON.parse(readFileSync(join(dir, "a", "training_args.json"), "utf8")).precision, m[1]);
  if (NATIVE_BF16) {
    assert.ok(existsSync(join(dir, "cache", "weitiao", "precision.json")));
    const second = run(args("b"), { env });
    assert.match(second.stderr, new RegExp(`precision auto: ${m[1]} \\(.*; cached in `));
    const pinned = run(args("c"), { env: { ...env, WEITIAO_AUTO_PRECISION: "bf16" } });
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal(JSON.parse(readFileSync(join(dir, "c", "training_args.json"), "utf8")).precision, "bf16");
  }
  // explicit precisions are obeyed without calibration; LoRA's default stays fp32 whatever auto would pick
  const fp32 = run([...args("d"), "--precision", "fp32"], { env });
  assert.doesNotMatch(fp32.stderr, /precision auto/);
  const lora = run([...args("e"), "--strategy", "lora"], { env: { ...env, WEITIAO_AUTO_PRECISION: "bf16" } });
  assert.equal(lora.code, 0, lora.stderr);
  assert.equal(JSON.parse(readFileSync(join(dir, "e", "training_args.json"), "utf8")).precision, "fp32");
});
