/**
 * What `weitiao train` saves loads unchanged in Python transformers, for every family: the same class, the same
 * token ids from the folder's tokenizer, the same logits (relative < 1e-5). Optional: runs where a Python with
 * torch and transformers is named by WEITIAO_HF_PYTHON (e.g. a venv from the machine image's wheel cache); skipped
 * elsewhere, CI included.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, ROOT, TINY, relErr, tempDir } from "../helpers.js";
import { familyDir, FAMILY_FIXTURES } from "../model/family-reference.js";
import { run } from "./cli-helpers.js";

const python = process.env.WEITIAO_HF_PYTHON;
const skip = python ? false : "set WEITIAO_HF_PYTHON to a python with torch and transformers";

const TEXTS = ["这家餐厅的菜非常好吃，服务也很周到", "the plot is thin but the actors are great .", "物流很快 <mask> 包装完好", "  spaces  and\ttabs "];

test("saved folders of every family load in transformers with the same ids and logits", { skip, timeout: 600_000 }, () => {
  const dir = tempDir();
  const train = join(dir, "train.csv");
  writeFileSync(train, "text,label\n很好吃,1\n太难吃了,0\ngreat movie,1\nboring plot,0\n");
  const folders: string[] = [];
  for (const [i, model] of [TINY, ...FAMILY_FIXTURES.map(familyDir)].entries()) {
    const out = join(dir, `out-${i}`);
    const r = run(["train", "--model", model, "--train-file", train, "--output-dir", out, "--epochs", "2", "--batch-size", "2", "--max-length", "32", "--learning-rate", "1e-3"]);
    assert.equal(r.code, 0, r.stderr);
    folders.push(out);
  }
  const textsFile = join(dir, "texts.json");
  writeFileSync(textsFile, JSON.stringify(TEXTS));
  const py = spawnSync(python!, [join(ROOT, "scripts", "check-transformers.py"), textsFile, ...folders], { encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  const theirs = JSON.parse(py.stdout) as Record<string, { input_ids: number[][]; logits: number[][]; architecture: string }>;
  const input = join(dir, "texts.jsonl");
  writeFileSync(input, TEXTS.map((text) => JSON.stringify({ text })).join("\n") + "\n");
  for (const out of folders) {
    const t = theirs[out]!;
    const tokens = run(["tokenize", "--model", out, "--input", input, "--max-length", "32"]);
    assert.equal(tokens.code, 0, tokens.stderr);
    assert.deepEqual(tokens.stdout.trim().split("\n").map((l) => JSON.parse(l).input_ids), t.input_ids, `${out}: token ids`);
    const p = run(["predict", "--model", out, "--input", input, "--max-length", "32"]);
    assert.equal(p.code, 0, p.stderr);
    const ours = p.stdout.trim().split("\n").map((l) => JSON.parse(l).logits as number[]);
    const e = relErr(ours.flat(), t.logits.flat());
    assert.ok(e < 1e-5, `${out} (${t.architecture}): logits rel ${e}`);
  }
});

test("saved token-classification (NER) folders of every family load in transformers as …ForTokenClassification with the same tags", { skip, timeout: 600_000 }, () => {
  const dir = tempDir();
  // Short enough for the tiny families' 32 positions (a byte-level model spends up to four tokens on a character)
  const texts = ["浙商银行叶老桂", "CSOL生化狂潮"];
  const folders: string[] = [];
  for (const [i, model] of [TINY, ...FAMILY_FIXTURES.map(familyDir)].entries()) {
    const out = join(dir, `ner-${i}`);
    const r = run(["train", "--model", model, "--task", "token-classification", "--train-file", join(FIXTURES, "ner", "cluener-40.jsonl"), "--output-dir", out,
      "--epochs", "2", "--max-length", "32", "--learning-rate", "1e-3"]);
    assert.equal(r.code, 0, r.stderr);
    folders.push(out);
  }
  const textsFile = join(dir, "texts.json");
  writeFileSync(textsFile, JSON.stringify(texts));
  const py = spawnSync(python!, [join(ROOT, "scripts", "check-transformers.py"), textsFile, ...folders], { encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  const all = JSON.parse(py.stdout) as Record<string, { tags: string[][]; scores: number[][]; architecture: string }>;
  // character words on both sides (the script splits each text into its characters)
  const rows = join(dir, "rows.jsonl");
  writeFileSync(rows, texts.map((t) => JSON.stringify({ tokens: [...t] })).join("\n") + "\n");
  for (const out of folders) {
    const theirs = all[out]!;
    assert.match(theirs.architecture, /ForTokenClassification$/);
    const p = run(["predict", "--model", out, "--input", rows, "--output-tags"]);
    assert.equal(p.code, 0, p.stderr);
    const ours = p.stdout.trim().split("\n").map((l) => JSON.parse(l) as { tags: string[]; tag_scores: number[] });
    assert.deepEqual(ours.map((r) => r.tags), theirs.tags, `${out} (${theirs.architecture})`);
    const e = relErr(ours.flatMap((r) => r.tag_scores), theirs.scores.flat());
    assert.ok(e < 1e-5, `${out} (${theirs.architecture}): tag probabilities rel ${e}`);
  }
});

test("saved masked-LM folders of every family with an MLM head load in transformers as …ForMaskedLM with the same fill-mask results", { skip, timeout: 600_000 }, () => {
  const dir = tempDir();
  const folders: string[] = [];
  for (const [i, model] of [TINY, ...FAMILY_FIXTURES.map(familyDir)].entries()) {
    const out = join(dir, `mlm-${i}`);
    const r = run(["train", "--model", model, "--task", "fill-mask", "--train-file", join(FIXTURES, "mlm", "cmrc-contexts-12.txt"), "--output-dir", out,
      "--max-steps", "3", "--max-length", "16", "--learning-rate", "1e-3"]);
    assert.equal(r.code, 0, r.stderr);
    folders.push(out);
  }
  const textsFile = join(dir, "texts.json");
  writeFileSync(textsFile, JSON.stringify(["今天天气很{mask}。", "北京是{mask}国的首{mask}", "the movie was {mask} ."]));
  const py = spawnSync(python!, [join(ROOT, "scripts", "check-transformers.py"), textsFile, ...folders], { encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  type Candidate = { token: number; score: number };
  const all = JSON.parse(py.stdout) as Record<string, { texts: string[]; results: (Candidate[] | Candidate[][])[]; architecture: string }>;
  for (const out of folders) {
    const theirs = all[out]!;
    assert.match(theirs.architecture, /ForMaskedLM$/);
    const p = run(["fill-mask", "--model", out, "--text", ...theirs.texts]);
    assert.equal(p.code, 0, p.stderr);
    const ours = p.stdout.trim().split("\n").map((l) => JSON.parse(l) as Candidate[] | Candidate[][]);
    const flat = (r: (Candidate[] | Candidate[][])[]): Candidate[] => r.flatMap((x) => (Array.isArray(x[0]) ? (x as Candidate[][]).flat() : (x as Candidate[])));
    assert.deepEqual(flat(ours).map((c) => c.token), flat(theirs.results).map((c) => c.token), `${out} (${theirs.architecture}): token ids`);
    const e = relErr(flat(ours).map((c) => c.score), flat(theirs.results).map((c) => c.score));
    assert.ok(e < 1e-5, `${out} (${theirs.architecture}): scores rel ${e}`);
  }
});

test("LoRA adapters weitiao saves load in peft (PeftModel.from_pretrained) with the same logits", { skip, timeout: 600_000 }, () => {
  const dir = tempDir();
  const train = join(dir, "train.csv");
  writeFileSync(train, "text,label\n很好吃,1\n太难吃了,0\ngreat movie,1\nboring plot,0\n");
  const adapters: string[] = [];
  for (const [i, flags] of [[], ["--lora-target-modules", "all-linear", "--use-rslora", "--lora-r", "2"]].entries()) {
    const out = join(dir, `lora-${i}`);
    const r = run(["train", "--model", TINY, "--strategy", "lora", "--train-file", train, "--output-dir", out, "--epochs", "3", "--batch-size", "2",
      "--max-length", "32", "--learning-rate", "1e-2", "--precision", "fp32", ...flags]);
    assert.equal(r.code, 0, r.stderr);
    adapters.push(out);
  }
  const textsFile = join(dir, "texts.json");
  writeFileSync(textsFile, JSON.stringify(TEXTS));
  const py = spawnSync(python!, [join(ROOT, "scripts", "check-peft.py"), textsFile, TINY, ...adapters], { encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(py.status, 0, py.stderr);
  const theirs = JSON.parse(py.stdout) as Record<string, { logits: number[][] }>;
  const input = join(dir, "texts.jsonl");
  writeFileSync(input, TEXTS.map((text) => JSON.stringify({ text })).join("\n") + "\n");
  for (const out of adapters) {
    const p = run(["predict", "--model", out, "--input", input, "--max-length", "32"]);
    assert.equal(p.code, 0, p.stderr);
    const ours = p.stdout.trim().split("\n").map((l) => JSON.parse(l).logits as number[]);
    const e = relErr(ours.flat(), theirs[out]!.logits.flat());
    assert.ok(e < 1e-5, `${out}: logits rel ${e}`);
  }
});
