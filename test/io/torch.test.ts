/** torch.save checkpoints through the restricted unpickler: the fixtures load, hostile pickles are refused. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { torchSource, unpickle } from "../../src/io/torch.js";
import { CLI, FIXTURES, REAL, TINY, referenceData, relErr, tempDir } from "../helpers.js";

function referenceLogits(model: ReturnType<typeof loadModelFromDir>["model"]): { ours: Float32Array | Float64Array; ref: Float32Array } {
  const { input, logits } = referenceData(REAL);
  return { ours: model.forward(input, { train: false }).logits, ref: logits };
}

test("pytorch_model.bin (zip + pickle) gives the F32 fixture's weights and logits", () => {
  const { model, report } = loadModelFromDir(join(FIXTURES, "bert-tiny-chinese-pytorch-bin"), { backend: tsBackend });
  assert.equal(report.weights, "pytorch_model.bin");
  assert.deepEqual(report.missing, []);
  const { model: st } = loadModelFromDir(TINY, { backend: tsBackend });
  assert.deepEqual(Float32Array.from(model.params.data), Float32Array.from(st.params.data));
  const { ours, ref } = referenceLogits(model);
  assert.ok(relErr(ours, ref) < 1e-5);
});

test("the tutorial's state_dict .pth loads with --model-config and predicts", () => {
  const pth = join(FIXTURES, "seed-state-dict", "bert_finetuned.pth");
  const src = torchSource(pth);
  assert.ok(src.names().includes("classifier.weight"));
  src.close();
  const { model } = loadModelFromDir(TINY, { backend: tsBackend, weightsFile: pth });
  const { ours, ref } = referenceLogits(model);
  assert.ok(relErr(ours, ref) < 1e-5);
  const r = spawnSync(process.execPath, [CLI, "predict", "--model", pth, "--model-config", TINY, "--text", "这部电影太好看了！"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"label":"(正面|负面)"/);
  const bad = spawnSync(process.execPath, [CLI, "predict", "--model", pth, "--text", "x"], { encoding: "utf8" });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /^error: .*needs --model-config/m);
});

/** A pickle that would run os.system("echo pwned") if loaded with Python's pickle. */
const EVIL = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from("cos\nsystem\n"), Buffer.from([0x58]), Buffer.from([11, 0, 0, 0]), Buffer.from("echo pwned"), Buffer.from(" "), Buffer.from([0x85, 0x52, 0x2e])]);

test("a pickle with os.system GLOBAL/REDUCE is refused before anything runs", () => {
  assert.throws(() => unpickle(EVIL, "evil.pkl"), /refused: the checkpoint's pickle references os\.system/);
  const evalPickle = Buffer.concat([Buffer.from([0x80, 0x04, 0x8c, 8]), Buffer.from("builtins"), Buffer.from([0x8c, 4]), Buffer.from("eval"), Buffer.from([0x93, 0x2e])]);
  assert.throws(() => unpickle(evalPickle, "eval.pkl"), /builtins\.eval/);
});

/** Write a stored-only zip (what torch.save writes) with the given entries. */
function zip(entries: [string, Buffer][], deflate = false): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, raw] of entries) {
    const data = deflate ? deflateRawSync(raw) : raw;
    const nameBuf = Buffer.from(name);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(deflate ? 8 : 0, 8); lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(raw.length, 22); lh.writeUInt16LE(nameBuf.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(deflate ? 8 : 0, 10); ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(raw.length, 24); ch.writeUInt16LE(nameBuf.length, 28); ch.writeUInt32LE(offset, 42);
    locals.push(lh, nameBuf, data);
    central.push(ch, nameBuf);
    offset += 30 + nameBuf.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10); end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

test("a checkpoint archive whose data.pkl calls os.system fails with a clear error through the CLI; truncated archives too", () => {
  const dir = tempDir();
  const evil = join(dir, "evil.bin");
  writeFileSync(evil, zip([["archive/data.pkl", EVIL]], true));
  assert.throws(() => torchSource(evil), /refused/);
  const r = spawnSync(process.execPath, [CLI, "predict", "--model", evil, "--model-config", TINY, "--text", "x"], { encoding: "utf8" });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /^error: .*refused: the checkpoint's pickle references os\.system/m);
  const good = readFileSync(join(FIXTURES, "seed-state-dict", "bert_finetuned.pth"));
  writeFileSync(join(dir, "cut.pth"), good.subarray(0, good.length / 2));
  assert.throws(() => torchSource(join(dir, "cut.pth")), /not a zip archive|truncated/);
});

test("legacy (pre-zip) torch checkpoints load too: the fixture model re-saved by torch 1.13's legacy format", () => {
  const { model, report } = loadModelFromDir(join(FIXTURES, "bert-tiny-chinese-legacy-bin"), { backend: tsBackend });
  assert.deepEqual(report.missing, []);
  const { model: st } = loadModelFromDir(TINY, { backend: tsBackend });
  assert.deepEqual(Float32Array.from(model.params.data), Float32Array.from(st.params.data));
});

test("legacy checkpoints are read in pieces: pickles from a prefix grown until they fit, storages when read; truncation is an error", () => {
  const file = join(FIXTURES, "bert-tiny-chinese-legacy-bin", "pytorch_model.bin");
  const whole = torchSource(file);
  const pieces = torchSource(file, { legacyHeadBytes: 16 }); // 16, 128, 1024, … bytes until the pickles parse
  assert.deepEqual(pieces.names(), whole.names());
  for (const name of whole.names()) assert.deepEqual(pieces.read(name), whole.read(name), name);
  whole.close();
  pieces.close();
  const dir = tempDir();
  const data = readFileSync(file);
  writeFileSync(join(dir, "cut.bin"), data.subarray(0, data.length - 100));
  assert.throws(() => torchSource(join(dir, "cut.bin")), /truncated legacy checkpoint \(storage /);
  writeFileSync(join(dir, "head.bin"), data.subarray(0, 200));
  assert.throws(() => torchSource(join(dir, "head.bin"), { legacyHeadBytes: 16 }), /truncated pickle/);
});

for (const format of ["legacy", "zip"]) {
  test(`${format} format: strided views sharing a storage and float16 tensors decode exactly`, () => {
    const src = torchSource(join(FIXTURES, `torch-views-${format}.bin`));
    assert.deepEqual([...src.read("a")], [0, 1, 2, 3, 4, 5]);
    assert.deepEqual([...src.read("b")], [1.5, 2.5]);
    assert.deepEqual([...src.read("c")], [1, 4]);
    assert.deepEqual(src.shape("c"), [2]);
    assert.deepEqual([...src.read("d")], [2, 3, 4], "contiguous from a storage offset");
    // readInto (the loader's path: zip storages straight from the file where contiguous F32) writes what read gives
    for (const name of src.names()) {
      const want = src.read(name);
      const slab = new Float32Array(want.length + 2).fill(-7);
      src.readInto!(name, slab.subarray(1, 1 + want.length));
      assert.deepEqual(slab, Float32Array.from([-7, ...want, -7]), name);
    }
    assert.throws(() => src.readInto!("a", new Float32Array(5)), /has 6 values, the destination 5/);
    src.close();
  });
}
