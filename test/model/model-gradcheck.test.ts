/** The whole model's backward against finite differences, in float64 with dropout on (same masks each call). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { tsBackend } from "../../src/backend/ts.js";
import { TaskModel } from "../../src/model/task-model.js";
import { parseBertConfig } from "../../src/model/config.js";
import { initParameter } from "../../src/io/checkpoint.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import { Rng } from "../../src/util/rng.js";

test("TaskModel backward matches finite differences (float64, dropout on)", () => {
  const config = parseBertConfig({
    vocab_size: 20, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 12,
    max_position_embeddings: 8, type_vocab_size: 2, initializer_range: 0.5, num_labels: 3,
  }, "test");
  const model = new TaskModel(config, tsBackend, "float64");
  const rng = new Rng(5);
  for (const s of model.params.specs) initParameter(model, s.name, rng);
  // Non-trivial LayerNorm parameters and biases so that bugs ignoring them show.
  for (const s of model.params.specs) if (s.name.endsWith("bias") || s.name.includes("LayerNorm")) {
    const v = model.params.value(s.name);
    for (let i = 0; i < v.length; i++) v[i]! += 0.3 * rng.normal();
  }
  const input = {
    inputIds: Int32Array.from([1, 5, 7, 2, 0, 1, 9, 3, 4, 2]), attentionMask: Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1, 1]),
    tokenTypeIds: Int32Array.from([0, 0, 1, 1, 0, 0, 0, 0, 1, 1]), batch: 2, seqLen: 5,
  };
  const labels = Int32Array.from([2, 0]);
  const loss = (): number => {
    const out = model.forward(input, { train: true, dropoutSeed: 11 });
    return crossEntropy(tsBackend, "float64", out.logits, labels, 2, 3).sum / 2;
  };
  const out = model.forward(input, { train: true, dropoutSeed: 11 });
  const { probs } = crossEntropy(tsBackend, "float64", out.logits, labels, 2, 3);
  model.zeroGrad();
  model.backward(out.cache!, crossEntropyGrad(tsBackend, "float64", probs, labels, 2, 3, 1 / 2));
  const data = model.params.data;
  const h = 1e-6;
  let checked = 0;
  for (const s of model.params.specs) {
    // A few entries per tensor (word embeddings: rows actually used, and the padding row which must stay 0).
    const picks = s.name.includes("word_embeddings") ? [0, 1 * 8 + 3, 9 * 8 + 1] : [0, Math.floor(s.size / 2), s.size - 1];
    for (const j of picks) {
      const i = s.offset + j;
      const orig = data[i]!;
      data[i] = orig + h; const lp = loss();
      data[i] = orig - h; const lm = loss();
      data[i] = orig;
      const fd = (lp - lm) / (2 * h);
      const an = model.params.grad[i]!;
      assert.ok(Math.abs(fd - an) < 1e-7 + 1e-5 * Math.abs(fd), `${s.name}[${j}]: fd ${fd} vs analytic ${an}`);
      checked++;
    }
  }
  assert.ok(checked > 60);
  assert.equal(model.params.gradOf("bert.embeddings.word_embeddings.weight")[0], 0, "padding row gets no gradient");
});
