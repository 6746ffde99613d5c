/**
 * --report-to tensorboard: the event file's records (lengths, masked CRC-32C, Event protobufs) read back field by
 * field, holding HF TensorBoardCallback's tags and the values of trainer_state.json; and, where a Python with the
 * tensorboard package is named by WEITIAO_HF_PYTHON, read by tensorboard's own EventAccumulator.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32c, maskedCrc } from "../../src/io/tensorboard.js";
import { ROOT, TINY, tempDir } from "../helpers.js";
import { run } from "../cli/cli-helpers.js";

type Scalar = { step: number; tag: string; value: number };

/** A minimal protobuf reader for the fields the writer uses. */
function fields(buf: Uint8Array): { field: number; wire: number; value: Uint8Array | bigint }[] {
  const out: { field: number; wire: number; value: Uint8Array | bigint }[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const k = Number(varint());
    const wire = k & 7;
    if (wire === 0) out.push({ field: k >> 3, wire, value: varint() });
    else if (wire === 1) (out.push({ field: k >> 3, wire, value: buf.subarray(i, i + 8) }), (i += 8));
    else if (wire === 5) (out.push({ field: k >> 3, wire, value: buf.subarray(i, i + 4) }), (i += 4));
    else {
      const n = Number(varint());
      out.push({ field: k >> 3, wire, value: buf.subarray(i, i + n) });
      i += n;
    }
  }
  return out;
}

function readEvents(file: string): { version: string | null; scalars: Scalar[] } {
  const data = new Uint8Array(readFileSync(file));
  const view = new DataView(data.buffer, data.byteOffset);
  let at = 0;
  let version: string | null = null;
  const scalars: Scalar[] = [];
  while (at < data.length) {
    const len = Number(view.getBigUint64(at, true));
    assert.equal(view.getUint32(at + 8, true), maskedCrc(data.subarray(at, at + 8)), "length CRC");
    const body = data.subarray(at + 12, at + 12 + len);
    assert.equal(view.getUint32(at + 12 + len, true), maskedCrc(body), "data CRC");
    at += 16 + len;
    const ev = fields(body);
    const step = Number((ev.find((f) => f.field === 2)?.value as bigint | undefined) ?? 0n);
    const fv = ev.find((f) => f.field === 3);
    if (fv) version = new TextDecoder().decode(fv.value as Uint8Array);
    const summary = ev.find((f) => f.field === 5);
    if (summary) {
      for (const v of fields(summary.value as Uint8Array).filter((f) => f.field === 1)) {
        const vf = fields(v.value as Uint8Array);
        const tag = new TextDecoder().decode(vf.find((f) => f.field === 1)!.value as Uint8Array);
        const raw = vf.find((f) => f.field === 2)!.value as Uint8Array;
        scalars.push({ step, tag, value: new DataView(raw.buffer, raw.byteOffset, 4).getFloat32(0, true) });
      }
    }
  }
  return { version, scalars };
}

test("CRC-32C (Castagnoli) of the standard check string", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

test("--report_to tensorboard writes HF's tags at their steps into OUTPUT_DIR/runs (or --logging_dir), records intact", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n很好,1\n很差,0\n不错,1\n难吃,0\n好看,1\n无聊,0\n");
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", file, "--validation-file", file, "--output_dir", out, "--per_device_train_batch_size", "2", "--num_train_epochs", "2",
    "--logging_steps", "1", "--report_to", "tensorboard", "--learning_rate", "1e-3"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /TensorBoard: .*runs\/events\.out\.tfevents\./);
  const files = readdirSync(join(out, "runs"));
  assert.equal(files.length, 1);
  const { version, scalars } = readEvents(join(out, "runs", files[0]!));
  assert.equal(version, "brain.Event:2");
  const history = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[];
  for (const h of history.filter((e) => "loss" in e && "learning_rate" in e)) {
    const s = scalars.find((x) => x.tag === "train/loss" && x.step === h.step);
    assert.ok(s && Math.abs(s.value - h.loss!) <= 1e-6 * Math.abs(h.loss!), `train/loss at ${h.step}`);
    assert.ok(scalars.some((x) => x.tag === "train/learning_rate" && x.step === h.step));
  }
  for (const h of history.filter((e) => "eval_loss" in e)) {
    for (const k of ["eval/loss", "eval/accuracy", "eval/macro_f1"]) assert.ok(scalars.some((x) => x.tag === k && x.step === h.step), `${k} at ${h.step}`);
  }
  assert.ok(scalars.some((x) => x.tag === "train/train_runtime" && x.step === 6), "the end-of-run summary");
  // --logging_dir puts the file there; other integrations are ignored with a notice
  const other = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "o2"), "--max-steps", "1", "--report_to", "wandb,tensorboard", "--logging_dir", join(dir, "logs")]);
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stderr, /--report-to wandb: not available here, ignored/);
  assert.equal(readdirSync(join(dir, "logs")).length, 1);
  const none = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "o3"), "--max-steps", "1", "--report_to", "none"]);
  assert.equal(none.code, 0, none.stderr);
  assert.ok(!readdirSync(join(dir, "o3")).includes("runs"));

  const python = process.env.WEITIAO_HF_PYTHON;
  if (!python) return;
  const py = spawnSync(python, [join(ROOT, "scripts", "read-tensorboard.py"), join(out, "runs")], { encoding: "utf8" });
  if (py.status !== 0 && /No module named 'tensorboard'/.test(py.stderr)) return;
  assert.equal(py.status, 0, py.stderr);
  const theirs = JSON.parse(py.stdout) as Record<string, [number, number][]>;
  for (const tag of ["train/loss", "train/learning_rate", "eval/loss", "eval/accuracy"]) {
    assert.deepEqual(theirs[tag]!.map(([s]) => s), scalars.filter((x) => x.tag === tag).map((x) => x.step), tag);
    theirs[tag]!.forEach(([, v], i) => assert.ok(Math.abs(v - scalars.filter((x) => x.tag === tag)[i]!.value) < 1e-7 * Math.max(1, Math.abs(v)), tag));
  }
});
