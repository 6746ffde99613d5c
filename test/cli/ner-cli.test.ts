/**
 * NER through the built CLI from fresh temp folders (issue 19): the fixture's 12-step trajectories through
 * `weitiao train` on JSONL tokens/ner_tags rows, and CLUENER rows trained, evaluated and predicted end to end.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../../src/io/safetensors.js";
import { BACKENDS } from "../backends.js";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { FIXTURES, TINY, stepLogs, tempDir } from "../helpers.js";
import { checkNerTrajectory, NER_DIR, nerManifest } from "../model/ner-reference.js";
import { assertOneLineError, run } from "./cli-helpers.js";

const CLUENER = join(FIXTURES, "ner", "cluener-40.jsonl");

/** The fixture's model folder with the tokenizer files (byte-identical to bert-tiny-chinese's, see PROVENANCE.md). */
function nerModel(tensors: (name: string, t: { shape: number[]; data: Float32Array }) => { shape: number[]; data: Float32Array } = (_, t) => t): string {
  const dir = join(tempDir(), "ner-model");
  mkdirSync(dir);
  for (const f of ["config.json", "tokenizer_config.json"]) copyFileSync(join(NER_DIR, "model", f), join(dir, f));
  for (const f of ["tokenizer.json", "vocab.txt"]) copyFileSync(join(TINY, f), join(dir, f));
  const out = new Map<string, TensorToWrite>();
  for (const [name, t] of readSafetensors(join(NER_DIR, "model", "model.safetensors"))) {
    const next = tensors(name, t);
    out.set(name, { dtype: "F32", shape: next.shape, data: next.data });
  }
  writeSafetensors(join(dir, "model.safetensors"), out, { format: "pt" });
  return dir;
}

const STRATEGIES: Record<string, string[]> = { full: [], head_only: ["--strategy", "head"], top_layer: ["--strategy", "top-k", "--top-k", "1"] };

for (const backend of BACKENDS) {
  for (const [strategy, flags] of Object.entries(STRATEGIES)) {
    test(`[${backend.name}] weitiao train reproduces the NER fixture's ${strategy} trajectory from JSONL tokens/ner_tags rows`, () => {
      const dir = tempDir();
      const file = join(dir, "train.jsonl");
      const rows = nerManifest.trajectory.batches.flat().map((i) => nerManifest.examples[i]!);
      writeFileSync(file, rows.map((e) => JSON.stringify({ tokens: e.tokens, ner_tags: e.ner_tags })).join("\n") + "\n");
      const out = join(dir, "out");
      const r = nerManifest.trajectory.results[strategy]!;
      // No --task: the folder's BertForTokenClassification implies it.
      const t = run(["train", "--model", nerModel(), "--train-file", file, "--output-dir", out, "--no-shuffle", "--batch-size", "4", "--epochs", "1",
        "--learning-rate", String(r.base_lr), "--warmup-steps", "3", "--weight-decay", "0.01", "--dropout", "0", "--max-length", "40",
        "--logging-steps", "1", "--precision", "fp32", "--backend", backend.name, ...flags]);
      assert.equal(t.code, 0, t.stderr);
      const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
      const saved = readSafetensors(join(out, "model.safetensors"));
      checkNerTrajectory(strategy, stepLogs(state.log_history), new Map([...saved].map(([k, v]) => [k, v.data])));
      const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
      assert.deepEqual(config.architectures, ["BertForTokenClassification"]);
      assert.deepEqual(Object.values(config.id2label), ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], "the model's own label order");
    });
  }
}

test("CLUENER rows: train (validation F1 per epoch), evaluate (seqeval scores), predict (entities, tags, CSV); CSV training data is refused", () => {
  const dir = tempDir();
  const out = join(dir, "out");
  // --task ner: the tutorial's name for it
  const t = run(["train", "--model", TINY, "--task", "ner", "--train-file", CLUENER, "--validation-file", CLUENER,
    "--output-dir", out, "--epochs", "1", "--max-length", "32", "--precision", "fp32"]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /Epoch 1 \| Loss: [\d.]+ \| Accuracy: [\d.]+ \| Val Loss: [\d.]+ \| Val Accuracy: [\d.]+ \| Val F1: [\d.]+/);
  assert.match(t.stderr, /task: token-classification \(21 tags: B-address, .* O\)/);
  assert.match(t.stderr, /notice: train: \d+ row\(s\) longer than --max-length 32 were cut, \d+ word\(s\) lost their tags/);
  const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  assert.deepEqual(config.architectures, ["BertForTokenClassification"]);
  assert.equal(Object.keys(config.id2label).length, 21);
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
  for (const k of ["eval_precision", "eval_recall", "eval_f1", "eval_accuracy"]) assert.equal(typeof metrics[k], "number", k);
  assert.match(t.stderr, /tagging scheme: BIO \(IOB2\)/);
  const html = readFileSync(join(out, "report.html"), "utf8");
  for (const section of ["Entities", "Entity types, span for span", "<th>name</th>", "<th>O</th>"]) assert.ok(html.includes(section), section);

  const ev = run(["evaluate", "--model", out, "--input", CLUENER]);
  assert.equal(ev.code, 0, ev.stderr);
  const e = JSON.parse(ev.stdout);
  assert.equal(e.rows, 40);
  assert.equal(e.eval_f1, metrics.eval_f1, "evaluate gives what training's final evaluation gave");
  assert.ok("name" in e.per_type && "number" in e.per_type.name);

  const p = run(["predict", "--model", out, "--text", "浙商银行企业信贷部叶老桂博士", "--output-tags"]);
  assert.equal(p.code, 0, p.stderr);
  const row = JSON.parse(p.stdout);
  assert.equal(row.tags.length, 14, "one tag per character");
  assert.ok(Array.isArray(row.entities));
  const jsonl = join(dir, "in.jsonl");
  writeFileSync(jsonl, [JSON.stringify({ text: "叶老桂认为" }), JSON.stringify({ tokens: ["张", "三"] })].join("\n") + "\n");
  const csvOut = join(dir, "pred.csv");
  const pc = run(["predict", "--model", out, "--input", jsonl, "--output", csvOut]);
  assert.equal(pc.code, 0, pc.stderr);
  const lines = readFileSync(csvOut, "utf8").trim().split("\n");
  assert.equal(lines[0], "text,entities");
  assert.equal(lines.length, 3);
  const withTags = run(["predict", "--model", out, "--input", jsonl, "--output", csvOut, "--output-tags"]);
  assert.equal(withTags.code, 0, withTags.stderr);
  assert.equal(readFileSync(csvOut, "utf8").split("\n")[0], "text,entities,tags,tag_scores");

  const csv = join(dir, "train.csv");
  writeFileSync(csv, "text,label\n张三,1\n");
  assertOneLineError(run(["train", "--model", TINY, "--task", "token-classification", "--train-file", csv, "--output-dir", join(dir, "x")]),
    /train\.csv: token-classification data is JSONL .* not CSV\/TSV/);
});

test("predicted entities: words, code-point offsets (end exclusive) and mean scores; a space yields no token and is O", () => {
  // A model that tags every token B-PER (classifier weights 0, the bias favouring B-PER): each character its own entity.
  const model = nerModel((name, t) => {
    if (name === "classifier.weight") return { shape: t.shape, data: new Float32Array(t.data.length) };
    if (name === "classifier.bias") return { shape: t.shape, data: Float32Array.from([0, 10, 0, 0, 0, 0, 0]) };
    return t;
  });
  const r = run(["predict", "--model", model, "--text", "😀张 三", "--output-tags"]);
  assert.equal(r.code, 0, r.stderr);
  const row = JSON.parse(r.stdout) as { entities: { entity_group: string; word: string; start: number; end: number; score: number }[]; tags: string[] };
  assert.deepEqual(row.tags, ["B-PER", "B-PER", "O", "B-PER"]);
  assert.deepEqual(row.entities.map((e) => [e.entity_group, e.word, e.start, e.end]), [["PER", "😀", 0, 1], ["PER", "张", 1, 2], ["PER", "三", 3, 4]]);
  const p = Math.exp(10) / (Math.exp(10) + 6);
  for (const e of row.entities) assert.ok(Math.abs(e.score - p) < 1e-6, String(e.score));
});

test("a space inside an entity neither splits it nor gets a tag; letters and digits runs are one word; long texts are windowed within the positions", () => {
  // Every token tagged I-PER: one chunk over every word that has tokens (an I- without B- starts one, as seqeval reads it).
  const model = nerModel((name, t) => {
    if (name === "classifier.weight") return { shape: t.shape, data: new Float32Array(t.data.length) };
    if (name === "classifier.bias") return { shape: t.shape, data: Float32Array.from([0, 0, 10, 0, 0, 0, 0]) };
    return t;
  });
  const r = run(["predict", "--model", model, "--text", "叶 老桂", "John lives", "--output-tags"]);
  assert.equal(r.code, 0, r.stderr);
  const [zh, en] = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { entities: { word: string; start: number; end: number }[]; tags: string[] });
  assert.deepEqual(zh!.tags, ["I-PER", "O", "I-PER", "I-PER"]);
  assert.deepEqual(zh!.entities.map((e) => [e.word, e.start, e.end]), [["叶 老桂", 0, 4]]);
  assert.deepEqual(en!.tags, ["I-PER", "O", "I-PER"], "words: John, the space, lives");
  assert.deepEqual(en!.entities.map((e) => [e.word, e.start, e.end]), [["John lives", 0, 10]]);
  // 100 characters with max_position_embeddings 64: windows of whole words, every character tagged
  const long = "北京".repeat(50);
  const l = run(["predict", "--model", model, "--text", long, "--output-tags"]);
  assert.equal(l.code, 0, l.stderr);
  assert.equal((JSON.parse(l.stdout) as { tags: string[] }).tags.filter((t) => t === "I-PER").length, 100);
  // CoNLL at predict: a token per line, no tags needed
  const dir = tempDir();
  const conll = join(dir, "in.conll");
  writeFileSync(conll, "张\n三\n\n北\n京\n");
  const c = run(["predict", "--model", model, "--input", conll, "--output-tags"]);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.stdout.trim().split("\n").length, 2);
});

test("tag ids need names; ids beyond the model's labels and rows without tokens are handled naming file:line", () => {
  const dir = tempDir();
  const ids = join(dir, "ids.jsonl");
  writeFileSync(ids, [JSON.stringify({ tokens: ["张", "三"], ner_tags: [1, 2] }), JSON.stringify({ tokens: ["北", "京"], ner_tags: [3, 4] })].join("\n") + "\n");
  // bert-tiny-chinese is a sentiment model: its 负面/正面 are not tag names
  assertOneLineError(run(["train", "--model", TINY, "--task", "ner", "--train-file", ids, "--output-dir", join(dir, "a")]),
    /ids\.jsonl:1: ner_tags are ids \(1, 2, 3…\) but the model has no tag names .* write the tags as names/);
  // the NER fixture names its 7 tags: ids are read through them
  const ok = run(["train", "--model", nerModel(), "--train-file", ids, "--output-dir", join(dir, "b"), "--epochs", "1"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /train: labels .*B-PER: 1, I-PER: 1, B-LOC: 1, I-LOC: 1/);
  const far = join(dir, "far.jsonl");
  writeFileSync(far, [JSON.stringify({ tokens: ["张"], ner_tags: [0] }), JSON.stringify({ tokens: ["三"], ner_tags: [9] })].join("\n") + "\n");
  assertOneLineError(run(["train", "--model", nerModel(), "--train-file", far, "--output-dir", join(dir, "c")]), /far\.jsonl:2: ner_tags id 9 is beyond the model's 7 labels/);
  const empty = join(dir, "empty.jsonl");
  writeFileSync(empty, [JSON.stringify({ tokens: ["张", "三"], ner_tags: ["B-PER", "I-PER"] }), JSON.stringify({ tokens: [], ner_tags: [] }),
    JSON.stringify({ text: "   ", label: {} })].join("\n") + "\n");
  const e = run(["train", "--model", TINY, "--task", "ner", "--train-file", empty, "--output-dir", join(dir, "d"), "--batch-size", "1", "--epochs", "1"]);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stderr, /notice: train: 2 row\(s\) with no word that yields a token were skipped \(first: .*empty\.jsonl:2\)/);
});

test("--aggregation-strategy as HF's: simple groups tokens, none lists them, first/max/average tag whole words", () => {
  // Every token B-PER: simple makes each token an entity (a B- starts one), first makes each word one.
  const bModel = nerModel((name, t) => {
    if (name === "classifier.weight") return { shape: t.shape, data: new Float32Array(t.data.length) };
    if (name === "classifier.bias") return { shape: t.shape, data: Float32Array.from([0, 10, 0, 0, 0, 0, 0]) };
    return t;
  });
  const text = "unaffable 北京";
  const words = (args: string[]) => {
    const r = run(["predict", "--model", bModel, "--text", text, ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { entities: Record<string, unknown>[] };
  };
  // u ##na ##ff ##able, the space (no token), 北, 京
  assert.deepEqual(words([]).entities.map((e) => [e.word, e.start, e.end]), [["u", 0, 1], ["na", 1, 3], ["ff", 3, 5], ["able", 5, 9], ["北", 10, 11], ["京", 11, 12]]);
  for (const how of ["first", "max", "average"]) {
    assert.deepEqual(words(["--aggregation-strategy", how]).entities.map((e) => [e.entity_group, e.word, e.start, e.end]), [["PER", "unaffable", 0, 9], ["PER", "北", 10, 11], ["PER", "京", 11, 12]], how);
  }
  const none = words(["--aggregation-strategy", "none"]).entities;
  assert.deepEqual(none.map((e) => [e.entity, e.word, e.index, e.start, e.end]), [
    ["B-PER", "u", 1, 0, 1], ["B-PER", "##na", 2, 1, 3], ["B-PER", "##ff", 3, 3, 5], ["B-PER", "##able", 4, 5, 9], ["B-PER", "北", 5, 10, 11], ["B-PER", "京", 6, 11, 12],
  ]);
  assert.deepEqual(Object.keys(none[0]!).sort(), ["end", "entity", "index", "score", "start", "word"]);
  // Every token I-PER: one group over the tokens, the space inside it
  const iModel = nerModel((name, t) => {
    if (name === "classifier.weight") return { shape: t.shape, data: new Float32Array(t.data.length) };
    if (name === "classifier.bias") return { shape: t.shape, data: Float32Array.from([0, 0, 10, 0, 0, 0, 0]) };
    return t;
  });
  const r = run(["predict", "--model", iModel, "--text", text]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { entities: { word: string }[] }).entities.map((e) => e.word), [text]);
});

test("--stride trains on overlapping windows of long rows; BIOES CoNLL data is read and scored; --stride is refused for text classification", () => {
  const dir = tempDir();
  const out = join(dir, "out");
  const t = run(["train", "--model", TINY, "--task", "ner", "--train-file", CLUENER, "--output-dir", out, "--epochs", "1", "--max-length", "16", "--stride", "4", "--precision", "fp32"]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stderr, /notice: train: \d+ row\(s\) longer than --max-length 16 were split into \d+ windows overlapping by up to 4 token\(s\) \(--stride\)/);
  assert.doesNotMatch(t.stderr, /notice: train: .* were cut/, "no training row is cut");
  const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8"));
  const plain = run(["train", "--model", TINY, "--task", "ner", "--train-file", CLUENER, "--output-dir", join(dir, "plain"), "--epochs", "1", "--max-length", "16", "--precision", "fp32"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.ok(state.global_step > JSON.parse(readFileSync(join(dir, "plain", "trainer_state.json"), "utf8")).global_step, "more windows than rows: more steps");

  const bioes = join(dir, "train.bioes");
  writeFileSync(bioes, "-DOCSTART- O\n\n张 B-PER\n三 E-PER\n在 O\n京 S-LOC\n\n李 S-PER\n四 O\n");
  const conll = join(dir, "train.conll");
  writeFileSync(conll, readFileSync(bioes));
  const b = run(["train", "--model", TINY, "--task", "ner", "--train-file", conll, "--validation-file", conll, "--output-dir", join(dir, "bioes"), "--epochs", "1", "--precision", "fp32"]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stderr, /tagging scheme: BIOES/);
  const m = JSON.parse(readFileSync(join(dir, "bioes", "metrics.json"), "utf8"));
  assert.equal(typeof m.eval_f1, "number");

  assertOneLineError(run(["train", "--model", TINY, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--output-dir", join(dir, "tc"), "--stride", "8"]),
    /--stride applies to token-classification \(NER\), not text-classification/);
});
