/**
 * Fuzzing the two weight-file parsers (issue 16): 1000 seeded mutations of a real safetensors header and 1000 of a
 * real torch pickle. Every one must end in a WeitiaoError or a load whose every tensor reads back with the length
 * its shape says — never another exception, a hang or a huge allocation. The files are patched in place with
 * same-length mutations, so each case costs a few kilobytes of writing, not a model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, copyFileSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { torchSource } from "../../src/io/torch.js";
import { ZipFile } from "../../src/io/zip.js";
import { WeitiaoError } from "../../src/util/errors.js";
import { Rng } from "../../src/util/rng.js";
import { FIXTURES, TINY, tempDir } from "../helpers.js";

const CASES = 1000;

/** Same-length mutations: flipped bits, random bytes, a copied run, a digit run rewritten, a token swapped in. */
function mutate(src: Buffer, rng: Rng, tokens: Buffer[]): Buffer {
  const b = Buffer.from(src);
  const at = (): number => Math.floor(rng.next() * b.length);
  const kind = Math.floor(rng.next() * 5);
  const n = 1 + Math.floor(rng.next() * 4);
  for (let k = 0; k < n; k++) {
    const i = at();
    if (kind === 0) b[i]! ^= 1 << Math.floor(rng.next() * 8);
    else if (kind === 1) b[i] = Math.floor(rng.next() * 256);
    else if (kind === 2) b.copy(b, i, at(), at());
    else if (kind === 3) for (let j = i; j < b.length && b[j]! >= 0x30 && b[j]! <= 0x39; j++) b[j] = 0x30 + Math.floor(rng.next() * 10);
    else {
      const t = tokens[Math.floor(rng.next() * tokens.length)]!;
      t.copy(b, i, 0, Math.min(t.length, b.length - i));
    }
  }
  return b;
}

/** A weight file opened for the fuzz: its tensor names, a reader, each tensor's declared element count. */
type Opened = { names: string[]; read: (n: string) => Float32Array; numel: (n: string) => number; close: () => void };

/** Run one case: a WeitiaoError is a clean refusal; success must give every tensor at its declared size. */
function attempt(open: () => Opened): "ok" | "refused" {
  let src: Opened | undefined;
  try {
    src = open();
    for (const name of src.names) assert.equal(src.read(name).length, src.numel(name), name);
    return "ok";
  } catch (e) {
    if (e instanceof WeitiaoError) return "refused";
    throw e;
  } finally {
    src?.close();
  }
}

/**
 * CASES mutations of `region` (the bytes at `offset` of `file`), each written in place and opened with `open`;
 * returns how many loaded and how many were refused.
 */
function fuzz(file: string, region: Buffer, offset: number, seed: number, tokens: Buffer[], open: () => Opened): { ok: number; refused: number } {
  const rng = new Rng(seed);
  const fd = openSync(file, "r+");
  const outcomes = { ok: 0, refused: 0 };
  try {
    for (let c = 0; c < CASES; c++) {
      const m = mutate(region, rng, tokens);
      writeSync(fd, m, 0, m.length, offset);
      outcomes[attempt(open)]++;
    }
  } finally {
    closeSync(fd);
  }
  return outcomes;
}

test(`${CASES} mutations of a safetensors header: each a clean error or a valid load`, () => {
  const file = join(tempDir(), "model.safetensors");
  copyFileSync(join(TINY, "model.safetensors"), file);
  const bytes = readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(0, 8 + headerLen);
  const tokens = ["null", "-1", "1e300", "[]", "{}", '"F16"', '"I64"', "4294967296", "9007199254740993", '"__metadata__"', "0.5", "true"].map((t) => Buffer.from(t));
  const outcomes = fuzz(file, header, 0, 7, tokens, () => {
    const f = SafetensorsFile.open(file);
    return { names: f.names(), read: (n) => f.float(n), numel: (n) => f.info(n).shape.reduce((a, b) => a * b, 1), close: () => f.close() };
  });
  // Both outcomes occur: the mutations reach past the first checks and the parser accepts what is still valid.
  assert.ok(outcomes.ok > 20 && outcomes.refused > 100, JSON.stringify(outcomes));
});

test(`${CASES} mutations of a torch checkpoint's pickle: each a clean error or a valid load`, () => {
  const file = join(tempDir(), "pytorch_model.bin");
  copyFileSync(join(FIXTURES, "bert-tiny-chinese-pytorch-bin", "pytorch_model.bin"), file);
  // Where data.pkl's bytes lie in the (stored) archive.
  const zip = new ZipFile(file);
  const name = zip.names().find((n) => n.endsWith("/data.pkl"))!;
  const pkl = zip.readEntry(name);
  zip.close();
  const bytes = readFileSync(file);
  const offset = bytes.indexOf(pkl);
  assert.ok(offset > 0);
  // Opcodes and arguments a pickle mutation should try: marks, tuples, APPEND/SETITEM, negative and huge ints.
  const tokens = [[0x28], [0x74], [0x61], [0x73], [0x75], [0x65], [0x30], [0x52], [0x51], [0x4a, 0xff, 0xff, 0xff, 0xff], [0x4a, 0xff, 0xff, 0xff, 0x7f], [0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80], [0x68, 0xff], [0x4e]]
    .map((t) => Buffer.from(t));
  const outcomes = fuzz(file, pkl, offset, 11, tokens, () => {
    const src = torchSource(file);
    return { names: src.names(), read: (n) => src.read(n) as Float32Array, numel: (n) => src.shape(n).reduce((x, y) => x * y, 1), close: () => src.close() };
  });
  assert.ok(outcomes.ok > 20 && outcomes.refused > 100, JSON.stringify(outcomes));
});
