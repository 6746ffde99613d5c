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
function zip(entries: [string, Buffer][], deflate = false, declared: Record<string, number> = {}): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, raw] of entries) {
    const data = deflate ? deflateRawSync(raw) : raw;
    const nameBuf = Buffer.from(name);
    const size = declared[name] ?? raw.length;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(deflate ? 8 : 0, 8); lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(size, 22); lh.writeUInt16LE(nameBuf.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(deflate ? 8 : 0, 10); ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(size, 24); ch.writeUInt16LE(nameBuf.length, 28); ch.writeUInt32LE(offset, 42);
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

/** Pickle pieces for hand-made state dicts (protocol 2 opcodes). */
const P = {
  str: (s: string): Buffer => { const b = Buffer.from(s); const h = Buffer.alloc(5); h[0] = 0x58; h.writeUInt32LE(b.length, 1); return Buffer.concat([h, b]); },
  int: (n: number): Buffer => { const b = Buffer.alloc(5); b[0] = 0x4a; b.writeInt32LE(n, 1); return b; },
  global: (m: string, n: string): Buffer => Buffer.from(`c${m}\n${n}\n`),
  op: (...ops: number[]): Buffer => Buffer.from(ops),
};
const MARK_ = 0x28, TUPLE = 0x74, REDUCE = 0x52, EMPTY_TUPLE = 0x29, SETITEMS = 0x75, STOP = 0x2e, BINPERSID = 0x51;

/** {"w": tensor of `size` over a FloatStorage of `numel`, at `offset` with `stride`} as torch.save pickles it. */
function statePickle(offset: number, size: number, stride: number, numel = 4): Buffer {
  const od = Buffer.concat([P.global("collections", "OrderedDict"), P.op(EMPTY_TUPLE, REDUCE)]);
  const storage = Buffer.concat([P.op(MARK_), P.str("storage"), P.global("torch", "FloatStorage"), P.str("0"), P.str("cpu"), P.int(numel), P.op(TUPLE, BINPERSID)]);
  const tensor = Buffer.concat([
    P.global("torch._utils", "_rebuild_tensor_v2"), P.op(MARK_), storage, P.int(offset),
    P.op(MARK_), P.int(size), P.op(TUPLE), P.op(MARK_), P.int(stride), P.op(TUPLE), P.op(0x89), od, P.op(TUPLE, REDUCE),
  ]);
  return Buffer.concat([P.op(0x80, 0x02), od, P.op(MARK_), P.str("w"), tensor, P.op(SETITEMS, STOP)]);
}

function checkpoint(pkl: Buffer, opts: { deflate?: boolean; declared?: Record<string, number> } = {}): string {
  const file = join(tempDir(), "pytorch_model.bin");
  writeFileSync(file, zip([["archive/data.pkl", pkl], ["archive/data/0", Buffer.from(Float32Array.of(1, 2, 3, 4).buffer)]], opts.deflate, opts.declared));
  return file;
}

test("negative storage offsets, sizes and strides in a torch pickle are refused; the same pickle with valid ones loads", () => {
  const good = torchSource(checkpoint(statePickle(1, 2, 1)));
  assert.deepEqual([...good.read("w")], [2, 3]);
  good.close();
  const strided = torchSource(checkpoint(statePickle(0, 2, 2)));
  assert.deepEqual([...strided.read("w")], [1, 3]);
  strided.close();
  assert.throws(() => torchSource(checkpoint(statePickle(-1, 2, 1))), /negative storage offset \(-1\)/);
  assert.throws(() => torchSource(checkpoint(statePickle(3, 2, -1))), /negative tensor stride \(-1\)/);
  assert.throws(() => torchSource(checkpoint(statePickle(0, -2, 1))), /negative tensor size/);
  assert.throws(() => torchSource(checkpoint(statePickle(0, 2, 1, -4))), /negative storage size/);
  const past = torchSource(checkpoint(statePickle(3, 2, 1)));
  assert.throws(() => past.read("w"), /reaches past its storage/);
  past.close();
});

test("pickles that APPEND onto a dict, SETITEM onto a list or misuse the stack are corrupt files, not crashes", () => {
  assert.throws(() => unpickle(P.op(0x80, 0x02, 0x7d, 0x4b, 1, 0x61, STOP), "x.pkl"), /corrupt pickle \(APPEND onto a dict\)/);
  assert.throws(() => unpickle(P.op(0x80, 0x02, 0x5d, 0x4b, 1, 0x4b, 2, 0x73, STOP), "x.pkl"), /corrupt pickle \(SETITEM onto a list\)/);
  assert.throws(() => unpickle(P.op(0x80, 0x02, 0x4b, 1, 0x65, STOP), "x.pkl"), /corrupt pickle \(no mark\)/);
  assert.throws(() => unpickle(P.op(0x80, 0x02, 0x61, STOP), "x.pkl"), /stack underflow/);
});

test("zip bombs and archives that lie about sizes are refused before anything large is allocated", () => {
  const pkl = statePickle(0, 4, 1);
  // A deflated data.pkl that claims its true size loads.
  const ok = torchSource(checkpoint(pkl, { deflate: true }));
  assert.deepEqual([...ok.read("w")], [1, 2, 3, 4]);
  ok.close();
  // A bomb claiming a small size stops inflating at the claim.
  const bomb = Buffer.concat([pkl, Buffer.alloc(8 << 20)]);
  assert.throws(() => torchSource(checkpoint(bomb, { deflate: true, declared: { "archive/data.pkl": pkl.length } })), /does not inflate to its declared \d+ bytes/);
  // One claiming 3 GiB is refused without inflating (the ratio is possible for deflate, the size is not for a pickle).
  const big = 3 * 2 ** 30;
  const t0 = Date.now();
  const file = join(tempDir(), "bomb.bin");
  writeFileSync(file, zip([["archive/data.pkl", Buffer.alloc(4 << 20)]], true, { "archive/data.pkl": 4 << 20 }));
  const bytes = readFileSync(file);
  // Patch the claimed size in both headers to 3 GiB (the compressed stream stays 4 MiB of zeros).
  bytes.writeUInt32LE(big, 22);
  bytes.writeUInt32LE(big, bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 24);
  writeFileSync(file, bytes);
  assert.throws(() => torchSource(file), /claims 3221225472 bytes .* corrupt or crafted zip|declares 3221225472 bytes, more than the 268435456 allowed/);
  assert.ok(Date.now() - t0 < 5000);
  // A stored entry claiming 4 GB in a small file.
  const stored = join(tempDir(), "stored.bin");
  const sb = zip([["archive/data.pkl", pkl]]);
  sb.writeUInt32LE(0xfffffffe, sb.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 20);
  writeFileSync(stored, sb);
  assert.throws(() => torchSource(stored), /claims .* corrupt or crafted zip/);
  const r = spawnSync(process.execPath, [CLI, "predict", "--model", stored, "--model-config", TINY, "--text", "x"], { encoding: "utf8" });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^error: .*corrupt or crafted zip$/m);
});
