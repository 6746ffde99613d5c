/**
 * LoRA (PEFT) on BertForSequenceClassification against test/fixtures/lora/bert-tiny-chinese-lora (its README, copied
 * from shared/fixtures): logits with the starting adapter, the trainable tensors' gradients, the frozen base getting
 * none, and merge_and_unload's weights, on every backend at the README's tolerances; with the mutations the README
 * names (alpha instead of alpha/r, the key instead of the value, the base's classifier instead of the adapter's copy).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../src/backend/types.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { adapterParams, mergedModel } from "../../src/io/adapter.js";
import { peftKey } from "../../src/model/lora.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { TaskModel } from "../../src/model/task-model.js";
import { BACKENDS } from "../backends.js";
import { FIXTURES, TINY, relErr } from "../helpers.js";

export const LORA_DIR = join(FIXTURES, "lora", "bert-tiny-chinese-lora");
/** The fixture's base is byte-identical to bert-tiny-chinese (PROVENANCE.md). */
export const LORA_BASE = TINY;

function fixture() {
  const f = SafetensorsFile.open(join(LORA_DIR, "reference", "forward.safetensors"));
  const [B, T] = f.info("input_ids").shape as [number, number];
  const input = { inputIds: f.int("input_ids"), attentionMask: f.int("attention_mask"), tokenTypeIds: f.int("token_type_ids"), batch: B, seqLen: T };
  return { f, input, labels: f.int("labels") };
}

export function loadLora(backend: Backend, adapterDir = join(LORA_DIR, "adapter")): TaskModel {
  const { model } = loadModelFromDir(LORA_BASE, { backend, adapterDir, inference: true });
  model.setDropout(0);
  model.setTrainable((s) => s.kind === "lora" || adapterParams(model).includes(s.name));
  return model;
}

const logitsOf = (model: TaskModel, input: ReturnType<typeof fixture>["input"]) => model.forward(input, { train: false }).logits;

for (const backend of BACKENDS) {
  test(`[${backend.name}] LoRA: logits with the starting adapter match the reference; the README's mutations fail`, () => {
    const { f, input } = fixture();
    try {
      const model = loadLora(backend);
      assert.deepEqual(model.lora!.targets, [0, 1].flatMap((l) => ["query", "value"].map((m) => `bert.encoder.layer.${l}.attention.self.${m}`)));
      assert.equal(model.lora!.scale, 2);
      const ref = f.float("logits");
      const e = relErr(logitsOf(model, input), ref);
      assert.ok(e < 1e-5, `logits rel ${e}`);
      // Mutations: scale alpha (not alpha/r); the base's classifier instead of the adapter's copy; LoRA on key instead of value
      const alpha = loadModelFromDir(LORA_BASE, { backend, adapterDir: join(LORA_DIR, "adapter"), inference: true }).model;
      (alpha.lora as { scale: number }).scale = 8;
      assert.ok(relErr(logitsOf(alpha, input), ref) > 1e-3, "scaling by alpha differs");
      const baseHead = loadLora(backend);
      const base = loadModelFromDir(LORA_BASE, { backend, inference: true }).model;
      for (const n of ["classifier.weight", "classifier.bias"]) baseHead.params.value(n).set(base.params.value(n));
      assert.ok(relErr(logitsOf(baseHead, input), ref) > 1e-3, "the base classifier differs");
      const onKey = loadModelFromDir(LORA_BASE, { backend, lora: { r: 4, alpha: 8, dropout: 0, targetModules: ["query", "key"], useRslora: false, modulesToSave: [] }, inference: true }).model;
      const adapter = SafetensorsFile.open(join(LORA_DIR, "adapter", "adapter_model.safetensors"));
      for (const s of onKey.params.specs) {
        const key = peftKey(s.name.replace(".key.", ".value."));
        if (s.kind === "lora" || s.name.startsWith("classifier.")) onKey.params.value(s.name).set(adapter.float(key));
      }
      adapter.close();
      assert.ok(relErr(logitsOf(onKey, input), ref) > 1e-3, "LoRA on the key differs");
    } finally {
      f.close();
    }
  });

  test(`[${backend.name}] LoRA: the trainable tensors' gradients match the reference; the base gets none`, () => {
    const { f, input, labels } = fixture();
    const grads = SafetensorsFile.open(join(LORA_DIR, "reference", "grads.safetensors"));
    try {
      const model = loadLora(backend);
      const out = model.forward(input, { train: true, dropoutSeed: 1 });
      const loss = model.head.loss(backend, "float32", out.logits, { labels, targets: null }, input.batch, 0.5);
      assert.ok(Math.abs(loss.sum / loss.count - f.float("train_loss")[0]!) < 1e-5);
      model.params.grad.fill(Number.NaN); // nothing frozen may be read or written
      model.zeroGrad();
      model.backward(out.cache!, loss.grad(1 / loss.count));
      const trainable = model.params.specs.filter((s) => model.trainable[s.index]);
      assert.deepEqual(trainable.map((s) => `grad.${peftKey(s.name)}`).sort(), grads.names().sort(), "the reference's 10 trainable tensors");
      for (const s of trainable) {
        const e = relErr(model.params.gradOf(s.name), grads.float(`grad.${peftKey(s.name)}`));
        assert.ok(e < 1e-4, `${s.name} grad rel ${e}`);
      }
      assert.equal(model.lowestTrainableLevel(), 1, "backprop stops above the embeddings");
    } finally {
      f.close();
      grads.close();
    }
  });

  test(`[${backend.name}] LoRA: merge_and_unload's weights and logits`, () => {
    const { f, input } = fixture();
    const ref = SafetensorsFile.open(join(LORA_DIR, "reference", "merged-start.safetensors"));
    try {
      const merged = mergedModel(loadLora(backend));
      assert.equal(merged.lora, null);
      for (const s of merged.params.specs) {
        const e = relErr(merged.params.value(s.name), ref.float(s.name));
        assert.ok(e < 1e-6, `${s.name} rel ${e}`);
      }
      merged.setDropout(0);
      assert.ok(relErr(logitsOf(merged, input), f.float("logits")) < 1e-5);
    } finally {
      f.close();
      ref.close();
    }
  });
}
