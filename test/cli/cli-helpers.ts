/** Running the built CLI as a user does, and crafting model folders, for the CLI test files. */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../../src/io/safetensors.js";
import { CLI, TINY, tempDir } from "../helpers.js";

export function run(args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", cwd: opts.cwd, input: opts.input, env: opts.env ?? process.env });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** One clear line on stderr (notices may precede it), exit 1, no JS stack. */
export function assertOneLineError(r: { code: number; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  const last = r.stderr.trim().split("\n").at(-1)!;
  assert.match(last, pattern);
}

/** A copy of the tiny model with config fields overridden and tensors transformed (name → new tensor or null to drop). */
export function craftModel(
  config: Record<string, unknown> = {},
  tensors: (name: string, t: { shape: number[]; data: Float32Array }) => { shape: number[]; data: Float32Array } | null = (_, t) => t,
): string {
  const dir = join(tempDir(), "model");
  mkdirSync(dir);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]) copyFileSync(join(TINY, f), join(dir, f));
  const cfg = { ...JSON.parse(readFileSync(join(TINY, "config.json"), "utf8")), ...config };
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  const out = new Map<string, TensorToWrite>();
  for (const [name, t] of readSafetensors(join(TINY, "model.safetensors"))) {
    const next = tensors(name, t);
    if (next) out.set(name, { dtype: "F32", shape: next.shape, data: next.data });
  }
  writeSafetensors(join(dir, "model.safetensors"), out);
  return dir;
}


/** Start the CLI, send `signal` once stderr matches `when`, and resolve with its exit code and stderr. */
export function runUntil(args: string[], when: RegExp, signal: NodeJS.Signals): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  return new Promise((resolve) => {
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (when.test(stderr) && !child.killed) child.kill(signal);
    });
    child.on("exit", (code) => resolve({ code, stderr }));
  });
}
