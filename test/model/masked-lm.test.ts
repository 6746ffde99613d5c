/**
 * The masked-LM head (BertForMaskedLM) against test/fixtures/mlm/bert-tiny-chinese-mlm (its README, copied from
 * shared/fixtures): the logits at the masked positions, every hidden state, the loss, every gradient (the tied word
 * embedding's holds both uses), and the full and head_only 12-step AdamW trajectories through the Trainer with the
 * fixture's fixed masks, on every backend, at the README's tolerances. Mutations the README names must fail: an untied
 * decoder, projecting without the transform's LayerNorm (and masking special tokens, in test/data/mlm.test.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Backend, FArray } from "../../src/backend/types.js";
import { collate, type EncodedExample } from "../../src/data/dataset.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { HeadContext } from "../../src/model/heads/head.js";
import { DEFAULT_TRAINING_ARGS, Trainer, type StepLog, type TrainingArgs } from "../../src/train/trainer.js";
import { BACKENDS } from "../backends.js";
import { FIXTURES, maxAbs, maxAbsDiff, relErr, tempDir } from "../helpers.js";
import { copyFileSync, readFileSync } from "node:fs";
import { readSafetensors, type TensorToWrite, writeSafetensors } from "../../src/io/safetensors.js";
import { tsBackend } from "../../src/backend/ts.js";

export const MLM_DIR = join(FIXTURES, "mlm", "bert-tiny-chinese-mlm");
const manifest = JSON.parse(readFileSync(join(MLM_DIR, "reference", "manifest.json"), "utf8")) as {
  trajectory: { batches: number[][]; results: Record<string, { base_lr: number; loss: number[]; lr: number[]; grad_norm: number[] }> };
};
const WORD = "bert.embeddings.word_embeddings.weight";

/** The fixture's 16 masked rows as training examples (masked ids, labels −100 except at the selected positions). */
export function fixtureRows(): EncodedExample[] {
  const f = SafetensorsFile.open(join(MLM_DIR, "reference", "forward.safetensors"));
  try {
    const [B, T] = f.info("input_ids").shape as [number, number];
    const ids = f.int("input_ids");
    const types = f.int("token_type_ids");
    const mask = f.int("attention_mask");
    const labels = f.int("labels");
    return Array.from({ length: B }, (_, i) => ({
      inputIds: [...ids.subarray(i * T, i * T + T)], tokenTypeIds: [...types.subarray(i * T, i * T + T)],
      attentionMask: [...mask.subarray(i * T, i * T + T)], label: -1, tokenLabels: [...labels.subarray(i * T, i * T + T)],
    }));
  } finally {
    f.close();
  }
}

function load(backend: Backend) {
  const { model, report } = loadModelFromDir(join(MLM_DIR, "model"), { backend, task: "fill-mask", inference: true });
  model.setDropout(0);
  return { model, report };
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] masked LM: the tied layout loads, and the masked logits, hidden states and eval loss match the reference`, () => {
    const f = SafetensorsFile.open(join(MLM_DIR, "reference", "forward.safetensors"));
    try {
      const { model, report } = load(backend);
      assert.deepEqual(report.unexpected, []);
      assert.equal(model.params.byName.has("bert.pooler.dense.weight"), false, "no pooler in a masked LM");
      assert.equal(model.params.byName.has("cls.predictions.decoder.weight"), false, "the decoder is the word embedding");
      const { input, labels } = collate(fixtureRows(), 0, true);
      const positions = f.int("masked_positions");
      assert.deepEqual([...input.selected!], Array.from({ length: positions.length / 2 }, (_, i) => positions[2 * i]! * input.seqLen + positions[2 * i + 1]!));
      const out = model.forward(input, { train: false, outputHiddenStates: true });
      const e = relErr(out.logits, f.float("masked_logits"));
      assert.ok(e < 1e-5, `masked logits rel ${e}`);
      const H = model.config.hidden_size;
      for (let i = 0; i <= model.config.num_hidden_layers; i++) {
        const h = relErr(out.hiddenStates![i]!, f.float(`hidden_states.${i}`), (k) => input.attentionMask[Math.floor(k / H)] === 1);
        assert.ok(h < 1e-5, `hidden_states.${i} rel ${h}`);
      }
      const loss = model.head.loss(backend, "float32", out.logits, { labels, targets: null }, labels.length, 0.5);
      const ref = f.float("eval_loss")[0]!;
      assert.ok(Math.abs(loss.sum / loss.count - ref) < 1e-6 * ref, `eval_loss ${loss.sum / loss.count} vs ${ref}`);

      // Mutation: projecting without the transform's LayerNorm moves the logits far past the tolerance.
      const ctx = (model as unknown as { headContext: HeadContext }).headContext;
      const noNorm: HeadContext = { ...ctx, backend: { ...ctx.backend, layerNormForward: (x: FArray, _g: FArray, _b: FArray, y: FArray) => y.set(x) } as Backend };
      const enc = model.encode(input, { train: false });
      const wrong = model.head.forward(noNorm, enc.pooled, labels.length, null, 0).logits;
      assert.ok(relErr(wrong, f.float("masked_logits")) > 1e-3, "without the LayerNorm the check fails");
    } finally {
      f.close();
    }
  });

  test(`[${backend.name}] masked LM: the train loss and every gradient match, the tied embedding's holding both uses`, () => {
    const f = SafetensorsFile.open(join(MLM_DIR, "reference", "forward.safetensors"));
    const grads = SafetensorsFile.open(join(MLM_DIR, "reference", "grads.safetensors"));
    try {
      const { model } = load(backend);
      const { input, labels } = collate(fixtureRows(), 0, true);
      const out = model.forward(input, { train: true, dropoutSeed: 1 });
      const loss = model.head.loss(backend, "float32", out.logits, { labels, targets: null }, labels.length, 0.5);
      const ref = f.float("train_loss")[0]!;
      assert.ok(Math.abs(loss.sum / loss.count - ref) < 1e-6 * ref, `train_loss ${loss.sum / loss.count} vs ${ref}`);
      model.zeroGrad();
      model.backward(out.cache!, loss.grad(1 / loss.count));
      assert.deepEqual(model.params.specs.map((s) => `grad.${s.name}`).sort(), grads.names().sort(), "the same parameters as the reference");
      for (const spec of model.params.specs) {
        const ours = model.params.gradOf(spec.name);
        if (spec.name.endsWith("attention.self.key.bias")) {
          assert.ok(maxAbs(ours) < 1e-6, `${spec.name} max ${maxAbs(ours)}`);
          continue;
        }
        const e = relErr(ours, grads.float(`grad.${spec.name}`));
        assert.ok(e < 1e-4, `${spec.name} rel ${e}`);
      }
      const H = model.config.hidden_size;
      assert.ok(maxAbs(model.params.gradOf(WORD).subarray(0, H)) > 0, "[PAD]'s row has the decoder's gradient");

      // Mutation: an untied decoder (its own copy of the embedding) leaves the embedding only the lookup's gradient.
      const ctx = (model as unknown as { headContext: HeadContext }).headContext;
      const out2 = model.forward(input, { train: true, dropoutSeed: 1 });
      model.zeroGrad();
      const untied: HeadContext = { ...ctx, g: (name) => (name === WORD ? null : ctx.g(name)) };
      const dFeatures = model.head.backward(untied, model.head.loss(backend, "float32", out2.logits, { labels, targets: null }, labels.length, 0.5).grad(1 / loss.count), out2.cache!.head, true);
      assert.ok(dFeatures);
      const e = relErr(model.params.gradOf(WORD), grads.float(`grad.${WORD}`));
      assert.ok(e > 1e-2, `an untied decoder fails the check (rel ${e})`);
    } finally {
      f.close();
      grads.close();
    }
  });

  const strategies: Record<string, Partial<TrainingArgs>> = { full: {}, head_only: { strategy: "head" } };
  for (const [strategy, extra] of Object.entries(strategies)) {
    test(`[${backend.name}] masked LM: the 12-step ${strategy} trajectory with the fixed masks matches the reference`, async () => {
      const rows = fixtureRows();
      const { model } = loadModelFromDir(join(MLM_DIR, "model"), { backend, task: "fill-mask" });
      model.setDropout(0);
      const r = manifest.trajectory.results[strategy]!;
      const args: TrainingArgs = {
        ...DEFAULT_TRAINING_ARGS, batchSize: 4, learningRate: r.base_lr, epochs: 1, warmupSteps: 3, weightDecay: 0.01,
        maxGradNorm: 1, shuffle: false, loggingSteps: 1, evalStrategy: "no", ...extra,
      };
      const trainSet = manifest.trajectory.batches.flat().map((i) => rows[i]!);
      const result = await new Trainer(model, args, trainSet, null, 0, {}).train();
      const logs = result.logHistory as StepLog[];
      assert.equal(logs.length, 12);
      logs.forEach((l, s) => {
        assert.ok(Math.abs(l.loss - r.loss[s]!) < 1e-5, `step ${s + 1} loss ${l.loss} vs ${r.loss[s]}`);
        assert.equal(l.learning_rate, r.lr[s], `step ${s + 1} lr`);
        assert.ok(Math.abs(l.grad_norm - r.grad_norm[s]!) / r.grad_norm[s]! < 1e-4, `step ${s + 1} grad_norm ${l.grad_norm} vs ${r.grad_norm[s]}`);
      });
      const after = SafetensorsFile.open(join(MLM_DIR, "reference", `after-${strategy}.safetensors`));
      const start = SafetensorsFile.open(join(MLM_DIR, "model", "model.safetensors"));
      try {
        const trained = new Set(after.names());
        for (const spec of model.params.specs) {
          const ours = model.params.value(spec.name);
          if (!trained.has(spec.name)) assert.deepEqual(Float32Array.from(ours), start.float(spec.name), `${spec.name} frozen: bit-identical`);
          else if (spec.name.endsWith("attention.self.key.bias")) assert.ok(maxAbsDiff(ours, after.float(spec.name)) < 5e-4, spec.name);
          else {
            const e = relErr(ours, after.float(spec.name));
            assert.ok(e < 1e-4, `${spec.name} rel ${e}`);
          }
        }
      } finally {
        after.close();
        start.close();
      }
    });
  }
}

test("a pretraining checkpoint (BertForPreTraining: tied copies stored, a next-sentence head) loads as a masked LM; NSP reported unused", () => {
  const dir = tempDir();
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of readSafetensors(join(MLM_DIR, "model", "model.safetensors"))) tensors.set(name, { dtype: "F32", shape: t.shape, data: t.data });
  const word = tensors.get(WORD)!;
  tensors.set("cls.predictions.decoder.weight", { ...word, data: new Float32Array(word.data as Float32Array).fill(7) });
  tensors.set("cls.predictions.decoder.bias", { dtype: "F32", shape: [21128], data: new Float32Array(21128) });
  tensors.set("cls.seq_relationship.weight", { dtype: "F32", shape: [2, 32], data: new Float32Array(64) });
  tensors.set("cls.seq_relationship.bias", { dtype: "F32", shape: [2], data: new Float32Array(2) });
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  copyFileSync(join(MLM_DIR, "model", "config.json"), join(dir, "config.json"));
  const lines: string[] = [];
  const { model, report } = loadModelFromDir(dir, { backend: tsBackend, task: "fill-mask", inference: true, log: (l) => lines.push(l) });
  assert.deepEqual(report.unexpected.sort(), ["cls.seq_relationship.bias", "cls.seq_relationship.weight"]);
  assert.ok(lines.some((l) => /were not used: cls\.seq_relationship/.test(l)));
  // the decoder is the embedding: a stale stored copy is not read
  assert.equal(model.params.value(WORD)[0], (word.data as Float32Array)[0]);
});
