/**
 * LoRA through the built CLI from fresh temp folders (issue 21): the fixture's 12-step trajectory from its starting
 * adapter (`weitiao train --model BASE --adapter DIR`), the adapter saved in PEFT's layout tensor by tensor, the merged
 * model, predict/evaluate with the adapter, a fresh adapter from --strategy lora, checkpoints that hold only the
 * trainable tensors, and the flags' errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, SafetensorsFile, type TensorToWrite, writeSafetensors } from "../../src/io/safetensors.js";
import { BACKENDS } from "../backends.js";
import { FIXTURES, relErr, stepLogs, tempDir } from "../helpers.js";
import { familyDir } from "../model/family-reference.js";
import { LORA_BASE, LORA_DIR } from "../model/lora.test.js";
import { assertOneLineError, run } from "./cli-helpers.js";

const manifest = JSON.parse(readFileSync(join(LORA_DIR, "reference", "manifest.json"), "utf8")) as {
  examples: { text: string; label: number }[];
  trajectory: { batches: number[][]; results: { lora: { base_lr: number; loss: number[]; lr: number[]; grad_norm: number[] } } };
};
const csvCell = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

function trainFile(dir: string, rows = manifest.trajectory.batches.flat()): string {
  const file = join(dir, "train.csv");
  writeFileSync(file, "text,label\n" + rows.map((i) => `${csvCell(manifest.examples[i]!.text)},${manifest.examples[i]!.label}`).join("\n") + "\n");
  return file;
}

const RECIPE = ["--no-shuffle", "--dropout", "0", "--batch-size", "4", "--epochs", "1", "--warmup-steps", "3", "--weight-decay", "0.01",
  "--max-grad-norm", "1.0", "--logging-steps", "1", "--max-length", "32", "--precision", "fp32"];

for (const backend of BACKENDS) {
  test(`[${backend.name}] weitiao train --adapter reproduces the LoRA fixture's trajectory; the adapter is PEFT's, tensor by tensor; --merge-lora`, () => {
    const dir = tempDir();
    const out = join(dir, "out");
    const r = manifest.trajectory.results.lora;
    const t = run(["train", "--model", LORA_BASE, "--adapter", join(LORA_DIR, "adapter"), "--train-file", trainFile(dir), "--output-dir", out,
      "--learning-rate", String(r.base_lr), "--merge-lora", "--backend", backend.name, ...RECIPE], { cwd: dir });
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stderr, /LoRA: r 4, alpha 8 \(scale 2\) on 4 Linears \(query, value\), modules_to_save classifier, score; trainable 1,090 of/);
    const logs = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history);
    assert.equal(logs.length, 12);
    logs.forEach((l, s) => {
      assert.ok(Math.abs(l.loss - r.loss[s]!) < 1e-5, `step ${s + 1} loss ${l.loss} vs ${r.loss[s]}`);
      assert.equal(l.learning_rate, r.lr[s], `step ${s + 1} lr`);
      assert.ok(Math.abs(l.grad_norm - r.grad_norm[s]!) / r.grad_norm[s]! < 1e-4, `step ${s + 1} grad_norm ${l.grad_norm} vs ${r.grad_norm[s]}`);
    });
    // The adapter: PEFT's files and key names, every tensor as the reference's after 12 steps
    assert.equal(existsSync(join(out, "model.safetensors")), false, "no full model beside the adapter");
    const ours = SafetensorsFile.open(join(out, "adapter_model.safetensors"));
    const ref = SafetensorsFile.open(join(LORA_DIR, "reference", "after-lora", "adapter_model.safetensors"));
    try {
      assert.deepEqual(ours.names().sort(), ref.names().sort());
      assert.equal(ours.header.metadata.format, "pt");
      for (const n of ref.names()) {
        const e = relErr(ours.float(n), ref.float(n));
        assert.ok(e < 1e-4, `${n} rel ${e}`);
      }
    } finally {
      ours.close();
      ref.close();
    }
    const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    const refConfig = JSON.parse(readFileSync(join(LORA_DIR, "reference", "after-lora", "adapter_config.json"), "utf8"));
    assert.deepEqual(Object.keys(config), Object.keys(refConfig), "every field PEFT writes, in its order");
    assert.deepEqual({ ...config, base_model_name_or_path: "base" }, refConfig);
    // The merged model: W + s·B·A on the targets, the adapter's classifier; every other tensor the base's, bit for bit
    const merged = SafetensorsFile.open(join(out, "merged", "model.safetensors"));
    const refMerged = SafetensorsFile.open(join(LORA_DIR, "reference", "merged.safetensors"));
    const base = SafetensorsFile.open(join(LORA_BASE, "model.safetensors"));
    try {
      for (const n of refMerged.names()) {
        const changed = /attention\.self\.(query|value)\.weight$/.test(n) || n.startsWith("classifier.");
        if (changed) assert.ok(relErr(merged.float(n), refMerged.float(n)) < 1e-4, n);
        else assert.deepEqual(merged.float(n), base.float(n), `${n}: the frozen base, bit-identical`);
      }
    } finally {
      merged.close();
      refMerged.close();
      base.close();
    }
    // predict: the adapter folder alone (its base from adapter_config.json), the base with --adapter, and the merged folder agree
    const text = manifest.examples[0]!.text;
    const logits = (args: string[]): number[] => {
      const p = run(["predict", ...args, "--text", text, "--backend", backend.name], { cwd: dir });
      assert.equal(p.code, 0, p.stderr);
      return JSON.parse(p.stdout).logits as number[];
    };
    const viaAdapter = logits(["--model", out]);
    assert.ok(relErr(logits(["--model", LORA_BASE, "--adapter", out]), viaAdapter) < 1e-6);
    assert.ok(relErr(logits(["--model", join(out, "merged")]), viaAdapter) < 1e-5);
    const ev = run(["evaluate", "--model", out, "--input", trainFile(dir, [0, 1, 2, 3]), "--backend", backend.name], { cwd: dir });
    assert.equal(ev.code, 0, ev.stderr);
    assert.equal(JSON.parse(ev.stdout).rows, 4);
  });
}

test("--strategy lora from a plain model: a fresh adapter (B zero: the first logits are the base's), checkpoints with the trainable tensors only, resume", () => {
  const dir = tempDir();
  const out = join(dir, "out");
  const file = trainFile(dir);
  const t = run(["train", "--model", LORA_BASE, "--strategy", "lora", "--lora-r", "2", "--lora-alpha", "4", "--lora-target-modules", "query,key,value,dense",
    "--train-file", file, "--output-dir", out, "--learning-rate", "5e-3", "--save-steps", "6", ...RECIPE], { cwd: dir });
  assert.equal(t.code, 0, t.stderr);
  const config = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
  assert.deepEqual([config.r, config.lora_alpha, config.target_modules, config.modules_to_save, config.task_type], [2, 4, ["query", "key", "value", "dense"], ["classifier", "score"], "SEQ_CLS"]);
  const a = SafetensorsFile.open(join(out, "adapter_model.safetensors"));
  try {
    // query, key, value, attention.output.dense, intermediate.dense, output.dense and the pooler's dense in 2 layers
    assert.equal(a.names().filter((n) => n.endsWith("lora_A.weight")).length, 13);
    assert.ok(a.names().includes("base_model.model.bert.pooler.dense.lora_B.weight"));
  } finally {
    a.close();
  }
  const ck = join(out, "checkpoint-6");
  assert.equal(existsSync(join(ck, "model.safetensors")), false, "a LoRA checkpoint holds no base weights");
  const opt = SafetensorsFile.open(join(ck, "optimizer.safetensors"));
  const adapter = SafetensorsFile.open(join(ck, "adapter_model.safetensors"));
  try {
    const trainable = adapter.names().reduce((n, k) => n + adapter.info(k).shape.reduce((x, y) => x * y, 1), 0);
    assert.equal(opt.info("exp_avg").shape[0], trainable, "Adam moments for the trainable tensors alone");
  } finally {
    opt.close();
    adapter.close();
  }
  // resuming from step 6 ends where the uninterrupted run ended
  const again = join(dir, "again");
  const r = run(["train", "--model", LORA_BASE, "--strategy", "lora", "--lora-r", "2", "--lora-alpha", "4", "--lora-target-modules", "query,key,value,dense",
    "--train-file", file, "--output-dir", again, "--learning-rate", "5e-3", "--resume-from-checkpoint", ck, ...RECIPE], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const x = SafetensorsFile.open(join(out, "adapter_model.safetensors"));
  const y = SafetensorsFile.open(join(again, "adapter_model.safetensors"));
  try {
    for (const n of x.names()) assert.deepEqual(y.float(n), x.float(n), n);
  } finally {
    x.close();
    y.close();
  }
});

test("LoRA flags: errors name the flag and what to do", () => {
  const dir = tempDir();
  const file = trainFile(dir, [0, 1, 2, 3]);
  const args = (more: string[]) => ["train", "--model", LORA_BASE, "--train-file", file, "--output-dir", join(dir, "o"), ...more];
  assertOneLineError(run(args(["--lora-r", "4"]), { cwd: dir }), /--lora-r applies to --strategy lora, not full/);
  assertOneLineError(run(args(["--strategy", "lora", "--lora-target-modules", "q_lin"]), { cwd: dir }), /--lora-target-modules q_lin matches no linear module of this bert model \(its linear modules: query, key, value, dense\)/);
  assertOneLineError(run(args(["--strategy", "lora", "--lora-target-modules", "classifier"]), { cwd: dir }), /classifier is both a LoRA target and trained whole/);
  assertOneLineError(run(args(["--adapter", join(LORA_DIR, "adapter"), "--lora-r", "2"]), { cwd: dir }), /--lora-r: the adapter's adapter_config.json sets it/);
  assertOneLineError(run(args(["--strategy", "lora", "--precision", "bf16"]), { cwd: dir }), /--strategy lora runs in fp32 for now|bf16/);
  assertOneLineError(run(["predict", "--model", LORA_BASE, "--adapter", dir, "--text", "x"], { cwd: dir }), /no adapter_config\.json/);
  const bad = join(dir, "bad");
  run(["train", "--model", LORA_BASE, "--strategy", "lora", "--train-file", file, "--output-dir", bad, "--precision", "fp32"], { cwd: dir });
  const cfg = JSON.parse(readFileSync(join(bad, "adapter_config.json"), "utf8"));
  writeFileSync(join(bad, "adapter_config.json"), JSON.stringify({ ...cfg, use_dora: true }));
  assertOneLineError(run(["predict", "--model", bad, "--text", "x"], { cwd: dir }), /use_dora true is a PEFT feature weitiao does not implement/);
});

test("LoRA on NER and on other families: PEFT's defaults where it has them, its modules_to_save per task type (DistilBERT's pre_classifier stays frozen)", () => {
  const dir = tempDir();
  const ner = join(dir, "ner");
  const t = run(["train", "--model", LORA_BASE, "--task", "ner", "--strategy", "lora", "--train-file", join(FIXTURES, "ner", "cluener-40.jsonl"), "--output-dir", ner,
    "--epochs", "1", "--max-length", "32", "--precision", "fp32"], { cwd: dir });
  assert.equal(t.code, 0, t.stderr);
  const c = JSON.parse(readFileSync(join(ner, "adapter_config.json"), "utf8"));
  assert.deepEqual([c.task_type, c.modules_to_save], ["TOKEN_CLS", ["classifier"]]);
  const p = run(["predict", "--model", ner, "--text", "浙商银行企业信贷部叶老桂博士", "--output-tags"], { cwd: dir });
  assert.equal(p.code, 0, p.stderr);
  assert.equal(JSON.parse(p.stdout).tags.length, 14);

  const file = trainFile(dir, [0, 1, 2, 3, 4, 5, 6, 7]);
  const roberta = run(["train", "--model", familyDir("roberta-tiny"), "--strategy", "lora", "--train-file", file, "--output-dir", join(dir, "roberta"), "--epochs", "1", "--precision", "fp32"], { cwd: dir });
  assert.equal(roberta.code, 0, roberta.stderr);
  assert.match(roberta.stderr, /on 4 Linears \(query, value\)/);
  assertOneLineError(run(["train", "--model", familyDir("distilbert-tiny"), "--strategy", "lora", "--train-file", file, "--output-dir", join(dir, "d0")], { cwd: dir }),
    /PEFT has no default LoRA target modules for model_type distilbert: give --lora-target-modules \(its linear modules: q_lin, k_lin, v_lin, out_lin, lin1, lin2; or all-linear\)/);
  const d = join(dir, "distilbert");
  const ok = run(["train", "--model", familyDir("distilbert-tiny"), "--strategy", "lora", "--lora-target-modules", "q_lin,v_lin", "--train-file", file, "--output-dir", d, "--epochs", "1", "--precision", "fp32"], { cwd: dir });
  assert.equal(ok.code, 0, ok.stderr);
  const keys = SafetensorsFile.open(join(d, "adapter_model.safetensors"));
  try {
    assert.ok(keys.names().includes("base_model.model.classifier.weight"));
    assert.ok(!keys.names().some((k) => k.includes("pre_classifier")), "pre_classifier is not in modules_to_save");
  } finally {
    keys.close();
  }
});

test("a hostile adapter folder: a tensor of the wrong shape, a key that is no parameter, a missing matrix — each one clear line", () => {
  const dir = tempDir();
  const src = readSafetensors(join(LORA_DIR, "adapter", "adapter_model.safetensors"));
  const variant = (name: string, edit: (m: Map<string, TensorToWrite>) => void): string => {
    const d = join(dir, name);
    mkdirSync(d);
    copyFileSync(join(LORA_DIR, "adapter", "adapter_config.json"), join(d, "adapter_config.json"));
    const m = new Map<string, TensorToWrite>([...src].map(([k, v]) => [k, { dtype: "F32", shape: v.shape, data: v.data }]));
    edit(m);
    writeSafetensors(join(d, "adapter_model.safetensors"), m, { format: "pt" });
    return d;
  };
  const a = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight";
  const shape = variant("shape", (m) => m.set(a, { dtype: "F32", shape: [5, 32], data: new Float32Array(160) }));
  assertOneLineError(run(["predict", "--model", LORA_BASE, "--adapter", shape, "--text", "x"], { cwd: dir }), /lora_A\.weight has shape \[5,32\] but the base model needs \[4,32\]/);
  const extra = variant("extra", (m) => m.set("base_model.model.bert.pooler.dense.weight", { dtype: "F32", shape: [32, 32], data: new Float32Array(1024) }));
  assertOneLineError(run(["predict", "--model", LORA_BASE, "--adapter", extra, "--text", "x"], { cwd: dir }), /bert\.pooler\.dense\.weight is not a parameter of this adapter/);
  const missing = variant("missing", (m) => m.delete(a));
  assertOneLineError(run(["predict", "--model", LORA_BASE, "--adapter", missing, "--text", "x"], { cwd: dir }), /the adapter lacks bert\.encoder\.layer\.0\.attention\.self\.query\.lora_A\.weight/);
});
