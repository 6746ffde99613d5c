/**
 * Masked LM through the built CLI from fresh temp folders (issue 20): `weitiao fill-mask` against the fixture's
 * FillMaskPipeline references, each input format, `weitiao train --task fill-mask` on .txt / JSONL / CSV / a folder,
 * the saved folder's tied layout, the round trip (fill-mask from the saved folder equals the training process's),
 * classification fine-tuned from it, and hostile input.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fillMask } from "../../src/api/fill-mask.js";
import { train } from "../../src/api/train.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { loadModel } from "../../src/api/predict.js";
import { BACKENDS } from "../backends.js";
import { FIXTURES, TINY, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "./cli-helpers.js";

const MLM = join(FIXTURES, "mlm", "bert-tiny-chinese-mlm", "model");
const CORPUS = join(FIXTURES, "mlm", "cmrc-contexts-12.txt");
const cases = (JSON.parse(readFileSync(join(FIXTURES, "mlm", "bert-tiny-chinese-mlm", "reference", "manifest.json"), "utf8")) as {
  fill_mask: { cases: { text: string; predictions: { score: number; token: number; token_str: string; sequence: string }[][] }[] };
}).fill_mask.cases;

type Candidate = { score: number; token: number; token_str: string; sequence: string };

/** One case's output against its reference: the same ids in order, scores relative < 1e-4, strings equal. */
function checkCase(got: unknown, ref: Candidate[][], what: string): void {
  const lists = (ref.length === 1 ? [got] : got) as Candidate[][];
  assert.equal(lists.length, ref.length, `${what}: one list per mask`);
  lists.forEach((list, m) => {
    assert.deepEqual(list.map((c) => c.token), ref[m]!.map((c) => c.token), `${what} mask ${m}: token ids`);
    list.forEach((c, k) => {
      const r = ref[m]![k]!;
      assert.ok(Math.abs(c.score - r.score) / r.score < 1e-4, `${what}: score ${c.score} vs ${r.score}`);
      assert.equal(c.token_str, r.token_str);
      assert.equal(c.sequence, r.sequence);
    });
  });
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] weitiao fill-mask --text gives the fixture's FillMaskPipeline results (ids, scores, strings)`, () => {
    const r = run(["fill-mask", "--model", MLM, "--backend", backend.name, "--text", ...cases.map((c) => c.text)], { cwd: tempDir() });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as unknown);
    assert.equal(lines.length, cases.length);
    cases.forEach((c, i) => checkCase(lines[i], c.predictions, c.text));
  });
}

test("weitiao fill-mask --input: JSONL, CSV, TSV, .txt and stdin, and --output; a text without [MASK] gets [] and a notice", () => {
  const dir = tempDir();
  const texts = cases.map((c) => c.text);
  writeFileSync(join(dir, "in.jsonl"), [...texts.map((t) => JSON.stringify({ text: t, id: 1 })), JSON.stringify({ text: "没有遮罩" })].join("\n") + "\n");
  writeFileSync(join(dir, "in.csv"), "id,sentence\n" + texts.map((t, i) => `${i},"${t}"`).join("\n") + "\n");
  writeFileSync(join(dir, "in.tsv"), "text\n" + texts.join("\n") + "\n");
  writeFileSync(join(dir, "in.txt"), texts.join("\r\n") + "\r\n");
  const expect = (stdout: string, n: number): void => {
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as unknown);
    assert.equal(lines.length, n);
    cases.forEach((c, i) => checkCase(lines[i], c.predictions, c.text));
  };
  const jsonl = run(["fill-mask", "--model", MLM, "--input", "in.jsonl"], { cwd: dir });
  assert.equal(jsonl.code, 0, jsonl.stderr);
  expect(jsonl.stdout, cases.length + 1);
  assert.equal(jsonl.stdout.trim().split("\n").at(-1), "[]");
  assert.match(jsonl.stderr, /1 text\(s\) hold no \[MASK\] within --max-length \(first: line 6\)/);
  const csv = run(["fill-mask", "--model", MLM, "--input", "in.csv", "--text-column", "sentence"], { cwd: dir });
  assert.equal(csv.code, 0, csv.stderr);
  expect(csv.stdout, cases.length);
  for (const f of ["in.tsv", "in.txt"]) {
    const r = run(["fill-mask", "--model", MLM, "--input", f], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    expect(r.stdout, cases.length);
  }
  const stdin = run(["fill-mask", "--model", MLM, "--input", "-"], { cwd: dir, input: texts.join("\n") + "\n\n" });
  assert.equal(stdin.code, 0, stdin.stderr);
  expect(stdin.stdout, cases.length);
  const out = run(["fill-mask", "--model", MLM, "--input", "in.txt", "--output", "res.jsonl", "--top-k", "2"], { cwd: dir });
  assert.equal(out.code, 0, out.stderr);
  const saved = readFileSync(join(dir, "res.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Candidate[]);
  assert.equal(saved.length, cases.length);
  assert.equal(saved[0]!.length, 2, "--top-k 2");
});

test("weitiao fill-mask: hostile and mistaken input ends in one clear line", () => {
  const dir = tempDir();
  // a classification folder has no masked-LM head: refused, not predicted with random weights
  assertOneLineError(run(["fill-mask", "--model", TINY, "--text", "好[MASK]"], { cwd: dir }), /lacks cls\.predictions/);
  assertOneLineError(run(["fill-mask", "--model", MLM], { cwd: dir }), /needs --text T … or --input FILE/);
  assertOneLineError(run(["fill-mask", "--model", MLM, "--text", "a[MASK]", "--output", "x.csv"], { cwd: dir }), /fill-mask writes JSONL/);
  assertOneLineError(run(["fill-mask", "--model", MLM, "--text", "a[MASK]", "--top-k", "0"], { cwd: dir }), /--top-k/);
  writeFileSync(join(dir, "bad.jsonl"), '{"text": "好[MASK]"}\n{"text": 5}\n');
  assertOneLineError(run(["fill-mask", "--model", MLM, "--input", "bad.jsonl"], { cwd: dir }), /bad\.jsonl:2: field "text" is a number/);
  assert.equal(existsSync(join(dir, "x.csv")), false);
});

test("train --task mlm on .txt: run_mlm's blocks, eval loss and perplexity logged and saved, HF's tied ForMaskedLM layout", () => {
  const dir = tempDir();
  const r = run(["train", "--task", "mlm", "--model", MLM, "--train-file", CORPUS, "--validation-split", "0.25", "--max-length", "32",
    "--epochs", "2", "--batch-size", "8", "--learning-rate", "1e-3", "--output-dir", "out", "--seed", "3"], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /train: 9 text\(s\), \d+ tokens → \d+ block\(s\) of 32 tokens; \d+ token\(s\) of remainder dropped/);
  assert.match(r.stderr, /masking: 0\.15 of the tokens per step \(80% \[MASK\], 10% random of 21075, 10% kept\)/);
  assert.match(r.stdout, /Epoch 2 \| Loss: [\d.]+ \| Accuracy: [\d.]+ \| Val Loss: [\d.]+ \| Val Accuracy: [\d.]+ \| Val Perplexity: [\d.]+/);
  const out = join(dir, "out");
  const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
  assert.deepEqual(config.architectures, ["BertForMaskedLM"]);
  assert.equal(config.id2label, undefined, "a masked LM has no labels");
  const f = SafetensorsFile.open(join(out, "model.safetensors"));
  try {
    const names = f.names();
    assert.ok(names.includes("cls.predictions.bias") && names.includes("cls.predictions.transform.LayerNorm.weight"));
    assert.ok(!names.some((n) => n.startsWith("cls.predictions.decoder") || n.startsWith("bert.pooler")), "tied weights saved once, no pooler");
  } finally {
    f.close();
  }
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")) as Record<string, number>;
  assert.ok(Math.abs(metrics.eval_perplexity! - Math.exp(metrics.eval_loss!)) < 1e-6 * metrics.eval_perplexity!);
  const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")) as { log_history: Record<string, number>[] };
  assert.equal(state.log_history.filter((e) => e.eval_perplexity !== undefined).length, 2, "perplexity at each evaluation");
  assert.match(readFileSync(join(out, "report.html"), "utf8"), /<figcaption>validation perplexity<\/figcaption>/);

  // evaluate scores a masked-LM folder on text (fixed masks from --seed: the same numbers every run); predict refuses it
  const ev = run(["evaluate", "--model", "out", "--input", CORPUS], { cwd: dir });
  assert.equal(ev.code, 0, ev.stderr);
  const scores = JSON.parse(ev.stdout) as Record<string, number>;
  assert.ok(scores.eval_loss! > 0 && Math.abs(scores.perplexity! - Math.exp(scores.eval_loss!)) < 1e-6 * scores.perplexity!, ev.stdout);
  assert.equal(scores.rows, 12);
  assert.equal(run(["evaluate", "--model", "out", "--input", CORPUS], { cwd: dir }).stdout, ev.stdout, "deterministic");
  assert.notEqual(run(["evaluate", "--model", "out", "--input", CORPUS, "--seed", "7"], { cwd: dir }).stdout, ev.stdout, "--seed draws other masks");
  assertOneLineError(run(["predict", "--model", "out", "--text", "很好"], { cwd: dir }), /is a masked-LM model \(BertForMaskedLM\): fill its mask tokens with weitiao fill-mask/);

  // Classification fine-tunes from the pretrained folder directly (the MLM head dropped, a pooler and classifier new)
  const cls = run(["train", "--model", "out", "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--max-steps", "2", "--batch-size", "4", "--output-dir", "cls"], { cwd: dir });
  assert.equal(cls.code, 0, cls.stderr);
  assert.match(cls.stderr, /newly initialized: bert\.pooler\.dense\.weight, bert\.pooler\.dense\.bias, classifier\.weight, classifier\.bias/);
  assert.match(cls.stderr, /were not used: cls\.predictions/);
  const p = run(["predict", "--model", "cls", "--text", "很好"], { cwd: dir });
  assert.equal(p.code, 0, p.stderr);
});

test("train --task fill-mask: JSONL and CSV text columns, a folder of .txt, --line-by-line, --whole-word-mask; and its refusals", () => {
  const dir = tempDir();
  const lines = readFileSync(CORPUS, "utf8").trim().split("\n");
  writeFileSync(join(dir, "c.jsonl"), lines.map((t, i) => JSON.stringify(i % 2 ? { text: t, source: "cmrc" } : { text: t })).join("\n") + "\n");
  writeFileSync(join(dir, "c.csv"), "id,body\n" + lines.map((t, i) => `${i},"${t.replace(/"/g, '""')}"`).join("\n") + "\n");
  mkdirSync(join(dir, "docs"));
  copyFileSync(CORPUS, join(dir, "docs", "a.txt"));
  writeFileSync(join(dir, "docs", "b.txt"), "\n病人主诉头痛三天。\n\n");
  const common = ["--task", "fill-mask", "--model", MLM, "--max-length", "32", "--max-steps", "2", "--batch-size", "4"];
  const jsonl = run(["train", ...common, "--train-file", "c.jsonl", "--output-dir", "o1"], { cwd: dir });
  assert.equal(jsonl.code, 0, jsonl.stderr);
  const csv = run(["train", ...common, "--train-file", "c.csv", "--text-column", "body", "--output-dir", "o2"], { cwd: dir });
  assert.equal(csv.code, 0, csv.stderr);
  assert.equal(jsonl.stderr.match(/train: .* block\(s\)/)![0], csv.stderr.match(/train: .* block\(s\)/)![0], "the same blocks from either file");
  const folder = run(["train", ...common, "--train-file", "docs", "--line-by-line", "--output-dir", "o3"], { cwd: dir });
  assert.equal(folder.code, 0, folder.stderr);
  assert.match(folder.stderr, /train: 13 text\(s\), \d+ tokens → 13 line\(s\); 12 line\(s\) cut at --max-length 32; 2 empty line\(s\) skipped/);
  const wwm = run(["train", ...common, "--train-file", CORPUS, "--whole-word-mask", "--mlm-probability", "0.2", "--output-dir", "o4"], { cwd: dir });
  assert.equal(wwm.code, 0, wwm.stderr);
  assert.match(wwm.stderr, /masking: 0\.2 of the tokens per step .*, whole words \(jieba\)/);

  writeFileSync(join(dir, "short.txt"), "很短。\n");
  assertOneLineError(run(["train", ...common, "--train-file", "short.txt", "--output-dir", "o6"], { cwd: dir }), /short\.txt: train has 5 tokens, too few for one block of --max-length 32 .*--line-by-line/);
  assert.equal(existsSync(join(dir, "o6")), false, "nothing written");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--line-by-line", "--output-dir", "o7"], { cwd: dir }), /--line-by-line applies to fill-mask/);
  assertOneLineError(run(["train", ...common, "--train-file", CORPUS, "--mlm-probability", "1.5", "--output-dir", "o8"], { cwd: dir }), /--mlm-probability must be in \(0, 1\)/);
  writeFileSync(join(dir, "bad.jsonl"), '{"text": "好"}\n{"body": "x"}\n');
  assertOneLineError(run(["train", ...common, "--train-file", "bad.jsonl", "--output-dir", "o9"], { cwd: dir }), /bad\.jsonl:2: no column "text"/);
});

test("round trip: fill-mask from the saved folder equals fill-mask in the training process", async () => {
  const dir = tempDir();
  const texts = cases.map((c) => c.text);
  const res = await train({ model: MLM, trainFile: CORPUS, outputDir: join(dir, "out"), task: "fill-mask", maxLength: 32, maxSteps: 3, batchSize: 8, learningRate: 1e-3, backend: "typescript" });
  const inProcess = fillMask({ model: res.model, tokenizer: res.tokenizer, labels: [], dir: res.outputDir, trainedMaxLength: 32 }, texts);
  const fromDisk = fillMask(await loadModel(join(dir, "out"), { task: "fill-mask", backend: "typescript" }), texts);
  assert.deepEqual(fromDisk, inProcess);
  // and training moved it: the top candidates of the untrained fixture are no longer the same
  const before = fillMask(await loadModel(MLM, { task: "fill-mask", backend: "typescript" }), texts);
  assert.notDeepEqual(fromDisk, before);
});

test("train --task mlm resumed from a checkpoint ends bit for bit where the uninterrupted run does (the same masks per step)", () => {
  const dir = tempDir();
  const common = ["train", "--task", "mlm", "--model", MLM, "--train-file", CORPUS, "--max-length", "32", "--max-steps", "4", "--batch-size", "8", "--learning-rate", "1e-3"];
  assert.equal(run([...common, "--output-dir", "a"], { cwd: dir }).code, 0);
  const b = run([...common, "--output-dir", "b", "--save-steps", "2"], { cwd: dir });
  assert.equal(b.code, 0, b.stderr);
  const resumed = run([...common, "--output-dir", "b", "--save-steps", "2", "--resume-from-checkpoint", join(dir, "b", "checkpoint-2")], { cwd: dir });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(readFileSync(join(dir, "b", "model.safetensors")), readFileSync(join(dir, "a", "model.safetensors")));
});

test("train --task mlm --strategy lora: a PEFT adapter on the frozen masked LM; fill-mask and evaluate load it", () => {
  const dir = tempDir();
  const r = run(["train", "--task", "mlm", "--model", MLM, "--train-file", CORPUS, "--max-length", "32", "--max-steps", "3", "--learning-rate", "1e-2", "--strategy", "lora", "--output-dir", "lo"], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const adapter = JSON.parse(readFileSync(join(dir, "lo", "adapter_config.json"), "utf8")) as Record<string, unknown>;
  assert.equal(adapter.task_type, null, "PEFT has no masked-LM task type");
  const filled = run(["fill-mask", "--model", "lo", "--text", cases[0]!.text], { cwd: dir });
  assert.equal(filled.code, 0, filled.stderr);
  const base = run(["fill-mask", "--model", MLM, "--text", cases[0]!.text], { cwd: dir });
  assert.notEqual(filled.stdout, base.stdout, "the adapter changes the predictions");
  const ev = run(["evaluate", "--model", "lo", "--input", CORPUS, "--max-length", "32"], { cwd: dir });
  assert.equal(ev.code, 0, ev.stderr);
  assert.ok((JSON.parse(ev.stdout) as { perplexity: number }).perplexity > 0);
});

test("what a new-user review found: short texts, perplexity as lower-is-better, output over input, CLUENER rows, cut masks, option checks", () => {
  const dir = tempDir();
  // texts so short that a batch may get no mask: such steps make no update instead of a NaN loss
  const short = run(["train", "--task", "mlm", "--model", MLM, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--line-by-line", "--batch-size", "1", "--max-steps", "40", "--output-dir", "s"], { cwd: dir });
  assert.equal(short.code, 0, short.stderr);
  assert.match(short.stderr, /notice: step \d+: nothing in its batch to predict \(no token chosen for masking/);
  assertOneLineError(run(["train", "--task", "mlm", "--model", MLM, "--train-file", CORPUS, "--line-by-line", "--max-length", "2", "--output-dir", "s2"], { cwd: dir }),
    /holds special tokens only at --max-length 2: nothing can be masked/);
  // perplexity: the lower the better, as the loss
  const best = run(["train", "--task", "mlm", "--model", MLM, "--train-file", CORPUS, "--validation-split", "0.25", "--max-length", "32", "--epochs", "3", "--learning-rate", "1e-3",
    "--metric-for-best-model", "perplexity", "--load-best-model-at-end", "--output-dir", "p"], { cwd: dir });
  assert.equal(best.code, 0, best.stderr);
  const state = JSON.parse(readFileSync(join(dir, "p", "trainer_state.json"), "utf8")) as { best_metric: number; log_history: { eval_perplexity?: number }[] };
  assert.equal(state.best_metric, Math.min(...state.log_history.flatMap((e) => (e.eval_perplexity === undefined ? [] : [e.eval_perplexity]))));
  // CLUENER rows: the text alone is read (their label objects are not looked at)
  const cluener = run(["train", "--task", "mlm", "--model", MLM, "--train-file", join(FIXTURES, "ner", "cluener-40.jsonl"), "--max-length", "32", "--max-steps", "1", "--output-dir", "c"], { cwd: dir });
  assert.equal(cluener.code, 0, cluener.stderr);
  // fill-mask: never over its input; masks cut off by --max-length are counted; too short a length is refused
  writeFileSync(join(dir, "in.jsonl"), JSON.stringify({ text: "好[MASK]" }) + "\n");
  assertOneLineError(run(["fill-mask", "--model", MLM, "--input", "in.jsonl", "--output", "in.jsonl"], { cwd: dir }), /is the input file itself/);
  assert.equal(readFileSync(join(dir, "in.jsonl"), "utf8"), JSON.stringify({ text: "好[MASK]" }) + "\n", "the input is untouched");
  const cut = run(["fill-mask", "--model", MLM, "--text", "好".repeat(100) + "[MASK]"], { cwd: dir });
  assert.equal(cut.code, 0, cut.stderr);
  assert.match(cut.stderr, /1 \[MASK\] token\(s\) lay past --max-length 64 and were cut off/);
  assertOneLineError(run(["fill-mask", "--model", MLM, "--text", "好[MASK]", "--max-length", "2"], { cwd: dir }), /--max-length must be at least 3/);
  assertOneLineError(run(["evaluate", "--model", MLM, "--input", CORPUS, "--mlm-probability", "1.5"], { cwd: dir }), /--mlm-probability must be in \(0, 1\)/);
  // HF refuses step evaluation without validation data; a .txt without --task gets pointed to --task mlm
  assertOneLineError(run(["train", "--model", TINY, "--train-file", join(DEMO_DATA_DIR, "train.csv"), "--eval-strategy", "steps", "--eval-steps", "2", "--output-dir", "e"], { cwd: dir }),
    /--eval-strategy steps evaluates validation data/);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", CORPUS, "--output-dir", "t"], { cwd: dir }), /a \.txt file is plain text: for masked-LM pretraining on it pass --task mlm/);
  assert.match(run(["train", "--task", "mlm", "--model", TINY, "--train-file", CORPUS, "--max-length", "32", "--max-steps", "1", "--output-dir", "f"], { cwd: dir }).stderr,
    /Some weights of BertForMaskedLM were not initialized/);
});
