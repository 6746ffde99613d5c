/** Loading HF folders: every safetensors layout of the fixtures, name variants, missing/unexpected keys. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir, saveModel } from "../../src/io/checkpoint.js";
import { encodeSafetensors, readSafetensors, SafetensorsFile, type TensorToWrite, writeSafetensors } from "../../src/io/safetensors.js";
import { FIXTURES, REAL, TINY, referenceData, relErr, tempDir } from "../helpers.js";

/** Round-to-nearest-even to bf16 / f16, back to f32 (PROVENANCE.md: compare against rounded F32 weights). */
const roundBf16 = (x: number): number => {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  const r = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(Uint32Array.of(r >>> 0).buffer)[0]!;
};
const roundF16 = (x: number): number => {
  // Float16 has 10 mantissa bits: round via scaling in float64 (exact for the fixture's normal range).
  if (x === 0) return x;
  const e = Math.floor(Math.log2(Math.abs(x)));
  const q = Math.pow(2, Math.max(e, -14) - 10);
  const v = x / q;
  const f = Math.floor(v);
  const d = v - f;
  const n = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * q;
};

test("F32, sharded F32: the reference logits", () => {
  const { input, logits } = referenceData(REAL);
  for (const dir of ["bert-tiny-chinese", "bert-tiny-chinese-sharded"]) {
    const { model, report } = loadModelFromDir(join(FIXTURES, dir), { backend: tsBackend });
    assert.deepEqual(report.missing, []);
    assert.ok(relErr(model.forward(input, { train: false }).logits, logits) < 1e-5, dir);
  }
});

for (const [dir, round] of [["bert-tiny-chinese-bf16", roundBf16], ["bert-tiny-chinese-f16", roundF16]] as const) {
  test(`${dir}: the logits of the F32 weights rounded to that dtype`, () => {
    const { input } = referenceData(REAL);
    const { model } = loadModelFromDir(join(FIXTURES, dir), { backend: tsBackend });
    const { model: rounded } = loadModelFromDir(TINY, { backend: tsBackend });
    const d = rounded.params.data;
    for (let i = 0; i < d.length; i++) d[i] = round(d[i]!);
    assert.deepEqual(Float32Array.from(model.params.data), Float32Array.from(rounded.params.data), "weights decode exactly");
    const e = relErr(model.forward(input, { train: false }).logits, rounded.forward(input, { train: false }).logits);
    assert.ok(e < 1e-6, `rel ${e}`);
  });
}

test("name variants: no bert. prefix, LayerNorm gamma/beta, position_ids ignored, cls.* unused and reported as HF does; missing classifier initialised and reported", () => {
  const src = readSafetensors(join(TINY, "model.safetensors"));
  const renamed = new Map<string, TensorToWrite>();
  for (const [name, t] of src) {
    if (name.startsWith("classifier.")) continue;
    const n = name.replace(/^bert\./, "").replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(/LayerNorm\.bias$/, "LayerNorm.beta");
    renamed.set(n, { dtype: "F32", shape: t.shape, data: t.data });
  }
  renamed.set("cls.predictions.bias", { dtype: "F32", shape: [3], data: new Float32Array(3) });
  renamed.set("embeddings.position_ids", { dtype: "I64", shape: [1, 4], data: BigInt64Array.from([0n, 1n, 2n, 3n]) });
  renamed.set("encoder.layer.0.extra.weight", { dtype: "F32", shape: [2], data: new Float32Array(2) });
  const dir = tempDir();
  writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(renamed, { format: "pt" }));
  copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
  const lines: string[] = [];
  const { model, report } = loadModelFromDir(dir, { backend: tsBackend, log: (l) => lines.push(l) });
  assert.deepEqual(report.missing.sort(), ["classifier.bias", "classifier.weight"]);
  assert.deepEqual(report.unexpected.sort(), ["cls.predictions.bias", "encoder.layer.0.extra.weight"]);
  assert.ok(lines.some((l) => /newly initialized: classifier\.weight, classifier\.bias/.test(l)));
  assert.deepEqual([...model.params.value("classifier.bias")], [0, 0]);
  const { model: ref } = loadModelFromDir(TINY, { backend: tsBackend });
  assert.deepEqual(model.params.value("bert.embeddings.LayerNorm.weight"), ref.params.value("bert.embeddings.LayerNorm.weight"));
});

test("a classifier of another label count is re-initialised with a notice", () => {
  const lines: string[] = [];
  const { model, report } = loadModelFromDir(TINY, { backend: tsBackend, labels: ["a", "b", "c"], log: (l) => lines.push(l) });
  assert.deepEqual(report.reinitialized.sort(), ["classifier.bias", "classifier.weight"]);
  assert.equal(model.params.value("classifier.weight").length, 3 * 32);
  assert.ok(lines.some((l) => /classifier has 2 labels \(负面, 正面\), the data 3 with 3 it lacks \(a, b, c\): the classifier is re-initialised/.test(l)), lines.join("\n"));
});

test("save writes what HF writes: config fields, tensor names, dtypes and shapes of the fixture; reload gives identical logits", () => {
  const { input } = referenceData(REAL);
  const { model } = loadModelFromDir(TINY, { backend: tsBackend });
  const out = join(tempDir(), "saved");
  mkdirSync(out);
  saveModel(model, out, TINY);
  const ours = SafetensorsFile.open(join(out, "model.safetensors"));
  const theirs = SafetensorsFile.open(join(TINY, "model.safetensors"));
  assert.deepEqual(ours.header.metadata, { format: "pt" });
  const hfNames = theirs.names().sort();
  assert.deepEqual(ours.names().filter((n) => hfNames.includes(n)).sort(), hfNames);
  for (const n of hfNames) {
    assert.equal(ours.info(n).dtype, theirs.info(n).dtype, n);
    assert.deepEqual(ours.info(n).shape, theirs.info(n).shape, n);
  }
  ours.close();
  theirs.close();
  const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  const hfCfg = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8"));
  for (const k of Object.keys(hfCfg)) assert.ok(k in cfg, `config.json keeps ${k}`);
  assert.deepEqual(cfg.architectures, ["BertForSequenceClassification"]);
  const { model: back } = loadModelFromDir(out, { backend: tsBackend });
  assert.deepEqual(back.forward(input, { train: false }).logits, model.forward(input, { train: false }).logits);
});

test("hostile safetensors fail cleanly before allocating: truncated file, header claiming 1 TB, tensor past the end", () => {
  const good = readFileSync(join(TINY, "model.safetensors"));
  const dir = tempDir();
  const truncated = join(dir, "truncated.safetensors");
  writeFileSync(truncated, good.subarray(0, good.length - 1000));
  assert.throws(() => SafetensorsFile.open(truncated).close(), /lies at bytes .* \(truncated file\?\)/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(1n << 40n, 0);
  writeFileSync(join(dir, "huge.safetensors"), huge);
  assert.throws(() => SafetensorsFile.open(join(dir, "huge.safetensors")), /header claims 1099511627776 bytes/);
  const header = Buffer.from(JSON.stringify({ w: { dtype: "F32", shape: [1000000000], data_offsets: [0, 4000000000] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length), 0);
  writeFileSync(join(dir, "past.safetensors"), Buffer.concat([len, header, Buffer.alloc(8)]));
  assert.throws(() => SafetensorsFile.open(join(dir, "past.safetensors")), /data section has 8 bytes/);
  for (const [entry, pattern] of [[null, /entry w is null, not a tensor description/], [7, /entry w is number/], [[1], /entry w is object/]] as const) {
    const h = Buffer.from(JSON.stringify({ w: entry }));
    const l = Buffer.alloc(8);
    l.writeBigUInt64LE(BigInt(h.length), 0);
    writeFileSync(join(dir, "null.safetensors"), Buffer.concat([l, h]));
    assert.throws(() => SafetensorsFile.open(join(dir, "null.safetensors")), pattern);
  }
});

test("other architectures are refused with a message naming model_type; BERT-shaped Chinese RoBERTa/MacBERT configs load", () => {
  const dir = tempDir();
  const cfg = JSON.parse(readFileSync(join(TINY, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, model_type: "gpt2", architectures: ["GPT2ForSequenceClassification"] }));
  assert.throws(() => loadModelFromDir(dir, { backend: tsBackend }), /model_type "gpt2" is not supported \(supported: bert, roberta, xlm-roberta, electra, distilbert, ernie, albert;/);
  // A family's config over another family's weights: none of the encoder's names are found.
  copyFileSync(join(TINY, "model.safetensors"), join(dir, "model.safetensors"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, model_type: "roberta", architectures: ["RobertaForSequenceClassification"] }));
  assert.throws(() => loadModelFromDir(dir, { backend: tsBackend }), /holds none of the encoder weights \(no roberta\.encoder\.layer\.0\.attention\.self\.query\.weight\); is it a roberta checkpoint/);
  // hfl/chinese-roberta-wwm-ext and MacBERT ship BertConfig (model_type "bert") and BERT weights: they load as BERT.
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, architectures: ["BertForMaskedLM"], directionality: "bidi" }));
  assert.doesNotThrow(() => loadModelFromDir(dir, { backend: tsBackend }));
});

test("floatInto writes what float() returns: F32 read straight into a float32 view at an offset, other dtypes and float64 converted", () => {
  for (const dir of ["bert-tiny-chinese", "bert-tiny-chinese-bf16"]) {
    const f = SafetensorsFile.open(join(FIXTURES, dir, "model.safetensors"));
    try {
      for (const name of f.names().filter((n) => f.info(n).dtype !== "I64")) {
        const want = f.float(name);
        const slab = new Float32Array(want.length + 7).fill(-1);
        f.floatInto(name, slab.subarray(3, 3 + want.length));
        assert.deepEqual(slab.subarray(3, 3 + want.length), want, `${dir} ${name}`);
        assert.deepEqual([...slab.subarray(0, 3), ...slab.subarray(3 + want.length)], [-1, -1, -1, -1, -1, -1, -1], "nothing outside the view is written");
        const wide = new Float64Array(want.length);
        f.floatInto(name, wide);
        assert.deepEqual(wide, Float64Array.from(want));
      }
      const first = f.names()[0]!;
      assert.throws(() => f.floatInto(first, new Float32Array(1)), /values, the destination 1/);
    } finally {
      f.close();
    }
  }
});

test("writeSafetensors writes the bytes encodeSafetensors makes, views at offsets included, and reads back", () => {
  const slab = Float32Array.from({ length: 40 }, (_, i) => i / 7);
  const tensors = new Map<string, TensorToWrite>([
    ["b.weight", { dtype: "F32", shape: [2, 3], data: slab.subarray(5, 11) }],
    ["a.bias", { dtype: "F32", shape: [3], data: slab.subarray(1, 4) }],
    ["ids", { dtype: "I64", shape: [2], data: BigInt64Array.of(7n, -1n) }],
  ]);
  const path = join(tempDir(), "w.safetensors");
  writeSafetensors(path, tensors, { format: "pt" });
  assert.deepEqual(readFileSync(path), encodeSafetensors(tensors, { format: "pt" }));
  const back = readSafetensors(path);
  assert.deepEqual(back.get("b.weight")!.data, slab.subarray(5, 11));
  assert.deepEqual(back.get("a.bias")!.shape, [3]);
});
