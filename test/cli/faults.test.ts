/**
 * Faults around the output folder (issue 16): a second run into a held folder, stale locks and temporaries of
 * killed runs, checkpoints of another run or corrupted, output paths that cannot be written, a full disk and
 * SIGTERM — each one line and exit 1 (143 for SIGTERM), nothing half-written or left behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { CLI, TINY, tempDir } from "../helpers.js";
import { assertOneLineError, run, runUntil } from "./cli-helpers.js";

const TRAIN = ["--model", TINY, "--batch-size", "2", "--max-length", "16", "--learning-rate", "1e-3"];

function smallCsv(dir: string): string {
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n好看,1\n难看,0\n精彩,1\n无聊,0\n");
  return file;
}

/** The PID of a process that has exited (so a lock or temporary naming it is stale). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

test("a folder another live run holds is refused naming its PID; a stale lock and stale temporaries are cleaned up", () => {
  const dir = tempDir();
  const file = smallCsv(dir);
  const out = join(dir, "out");
  mkdirSync(out);
  // This test process is alive: its PID in the lock means the folder is in use.
  writeFileSync(join(out, ".weitiao.lock"), JSON.stringify({ pid: process.pid }) + "\n");
  const held = run(["train", ...TRAIN, "--train-file", file, "--output-dir", out, "--epochs", "1"]);
  assertOneLineError(held, new RegExp(`another weitiao run \\(pid ${process.pid}\\) is writing there`));
  assert.deepEqual(readdirSync(out), [".weitiao.lock"]);
  // A lock and temporaries left by a run that was killed: reported, removed, the run goes on.
  const pid = deadPid();
  writeFileSync(join(out, ".weitiao.lock"), JSON.stringify({ pid }) + "\n");
  mkdirSync(join(out, `checkpoint-3.tmp-${pid}.tmp-${pid}`));
  writeFileSync(join(out, `model.safetensors.tmp-${pid}`), "partial");
  mkdirSync(join(dir, `out.tmp-${pid}`));
  const ok = run(["train", ...TRAIN, "--train-file", file, "--output-dir", out, "--epochs", "1"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, new RegExp(`was left by pid ${pid}, which is no longer running: taking it over`));
  assert.ok(!readdirSync(out).some((f) => f.includes(".tmp-") || f === ".weitiao.lock"), readdirSync(out).join(" "));
  assert.ok(!existsSync(join(dir, `out.tmp-${pid}`)));
  assert.ok(existsSync(join(out, "model.safetensors")));
});

test("resuming a checkpoint of a longer run, or one whose weitiao_state.json is corrupt, is refused in one line", () => {
  const dir = tempDir();
  const file = smallCsv(dir);
  const out = join(dir, "out");
  const first = run(["train", ...TRAIN, "--train-file", file, "--output-dir", out, "--epochs", "2", "--save-steps", "1"]);
  assert.equal(first.code, 0, first.stderr);
  const beyond = run(["train", ...TRAIN, "--train-file", file, "--output-dir", out, "--epochs", "1", "--resume-from-checkpoint", join(out, "checkpoint-3")]);
  assertOneLineError(beyond, /the checkpoint is at step 3 .* but this run has 2 steps of 2 per epoch: resume with the options of the run that wrote it/);
  const state = join(out, "checkpoint-3", "weitiao_state.json");
  for (const [content, pattern] of [
    ["{}", /weitiao_state\.json: field step is missing: the checkpoint is corrupt/],
    ["not json", /weitiao_state\.json: not valid JSON .*: the checkpoint is corrupt/],
    ['{"step": -1}', /field step is not a non-negative integer/],
    ["[]", /not a JSON object/],
  ] as const) {
    writeFileSync(state, content);
    const r = run(["train", ...TRAIN, "--train-file", file, "--output-dir", out, "--epochs", "2", "--resume-from-checkpoint", join(out, "checkpoint-3")]);
    assertOneLineError(r, pattern);
  }
});

test("predict --output into a missing folder or onto a folder fails before any work; a stale temporary of it is removed", () => {
  const dir = tempDir();
  assertOneLineError(run(["predict", "--model", TINY, "--text", "好看", "--output", join(dir, "missing", "x.jsonl")]), /--output .*x\.jsonl: the folder .*missing does not exist/);
  assertOneLineError(run(["predict", "--model", TINY, "--text", "好看", "--output", dir]), /--output .*: is a folder; give a file name such as/);
  const pid = deadPid();
  writeFileSync(join(dir, `preds.jsonl.tmp-${pid}`), "half");
  const ok = run(["predict", "--model", TINY, "--text", "好看", "--output", join(dir, "preds.jsonl")]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(readdirSync(dir), ["preds.jsonl"]);
  assert.equal(readFileSync(join(dir, "preds.jsonl"), "utf8").trim().split("\n").length, 1);
  // --output-dir that is a file.
  assertOneLineError(run(["train", ...TRAIN, "--train-file", smallCsv(dir), "--output-dir", join(dir, "preds.jsonl")]), /--output-dir .*preds\.jsonl: exists and is not a folder/);
});

// A 4 MB tmpfs in a private mount namespace (no root needed where user namespaces are allowed): the tiny model's
// 2.8 MB weights fit once, a checkpoint (weights + optimizer moments) does not.
const unshare = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "true"]);
const tmpfsSkip = unshare.status === 0 ? false : "unshare --user --mount is not available here";

test("a full disk during a checkpoint or the final save: one line naming ENOSPC, exit 1, no temporaries left", { skip: tmpfsSkip }, () => {
  const dir = tempDir();
  const file = smallCsv(dir);
  const disk = join(dir, "disk");
  mkdirSync(disk);
  const inTmpfs = (size: string, extra: string[]): { code: number; stderr: string; listing: string } => {
    const cmd = [process.execPath, CLI, "train", ...TRAIN, "--train-file", file, "--output-dir", join(disk, "out"), "--epochs", "1", ...extra]
      .map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
    const script = `mount -t tmpfs -o size=${size} none '${disk}' && { ${cmd}; echo "exit=$?" >&2; ls -A '${disk}' '${disk}/out' 2>/dev/null; }`;
    const r = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "sh", "-c", script], { encoding: "utf8" });
    const m = /exit=(\d+)/.exec(r.stderr);
    return { code: m ? Number(m[1]) : -1, stderr: r.stderr.replace(/exit=\d+\n?/, ""), listing: r.stdout };
  };
  const ckpt = inTmpfs("4m", ["--save-steps", "1"]);
  assertOneLineError(ckpt, /ENOSPC: no space left on device.*\(the disk is full: free space, or write elsewhere\)/);
  assert.doesNotMatch(ckpt.listing, /\.tmp-|\.weitiao\.lock|checkpoint-1\b/, ckpt.listing);
  const final = inTmpfs("2m", []);
  assertOneLineError(final, /ENOSPC/);
  assert.doesNotMatch(final.listing, /\.tmp-|\.weitiao\.lock|model\.safetensors/, final.listing);
});

test("SIGTERM during weitiao train: finishes the step, writes a checkpoint, exits 143", async () => {
  const out = join(tempDir(), "out");
  const { code, stderr } = await runUntil(["train", "--model", TINY, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--output-dir", out,
    "--epochs", "3", "--batch-size", "8", "--max-length", "32", "--logging-steps", "1", "--backend", "typescript"], /step 3\/150/, "SIGTERM");
  assert.equal(code, 143, stderr);
  assert.match(stderr, /interrupt \(SIGTERM\): finishing the current step/);
  assert.match(stderr, /resume with: weitiao train <same options> --resume-from-checkpoint .*checkpoint-\d+/);
  const ckpts = readdirSync(out).filter((d) => d.startsWith("checkpoint-"));
  assert.equal(ckpts.length, 1);
  assert.ok(existsSync(join(out, ckpts[0]!, "optimizer.safetensors")));
  assert.ok(!existsSync(join(out, ".weitiao.lock")));
});
