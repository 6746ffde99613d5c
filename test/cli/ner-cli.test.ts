/**
 * NER through the built CLI from fresh temp folders (issue 19): the fixture's 12-step trajectories through
 * `weitiao train` on JSONL tokens/ner_tags rows, and CLUENER rows trained, evaluated and predicted end to end.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, writeSafetensors, type TensorToWrite } from "../../src/io/safetensors.js";
import { BACKENDS } from "../backends.js";
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
  assert.equal(existsSync(join(out, "report.html")), true);

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
