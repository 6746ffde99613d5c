import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { BACKENDS } from "../backends.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import { HF, REAL, TINY, maxAbs, referenceData, relErr } from "../helpers.js";

for (const backend of BACKENDS) for (const [setName, dir] of [["real-tokens", REAL], ["hf-transformers", HF]] as const) {
  test(`[${backend.name}] train loss and every gradient match ${setName} reference`, () => {
    const fwd = SafetensorsFile.open(join(dir, "forward.safetensors"));
    const grads = SafetensorsFile.open(join(dir, "grads.safetensors"));
    const { model } = loadModelFromDir(TINY, { backend });
    model.setDropout(0);
    const [B, T] = fwd.info("input_ids").shape as [number, number];
    const input = { inputIds: fwd.int("input_ids"), attentionMask: fwd.int("attention_mask"), tokenTypeIds: fwd.int("token_type_ids"), batch: B, seqLen: T };
    const labels = fwd.int("labels");
    const out = model.forward(input, { train: true, dropoutSeed: 1 });
    const C = model.config.num_labels;
    const { sum, probs } = crossEntropy(backend, "float32", out.logits, labels, B, C);
    assert.ok(Math.abs(sum / B - fwd.float("train_loss")[0]!) < 1e-5, `loss ${sum / B}`);
    model.zeroGrad();
    model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, B, C, 1 / B));
    for (const spec of model.params.specs) {
      const ours = model.params.gradOf(spec.name);
      const ref = grads.float(`grad.${spec.name}`);
      if (spec.name.endsWith("attention.self.key.bias")) {
        assert.ok(maxAbs(ours) < 1e-6, `${spec.name} max ${maxAbs(ours)}`);
      } else {
        const e = relErr(ours, ref);
        assert.ok(e < 1e-4, `${spec.name} rel ${e}`);
      }
    }
    // HF's padding_idx 0: row 0 of the word-embedding gradient is always zero.
    const H = model.config.hidden_size;
    assert.equal(maxAbs(model.params.gradOf("bert.embeddings.word_embeddings.weight").subarray(0, H)), 0);
    fwd.close();
    grads.close();
  });
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] the [CLS]-only last layer gives the logits and gradients of the full last layer`, () => {
    const { input, labels } = referenceData(REAL);
    const B = input.batch;
    const { model } = loadModelFromDir(TINY, { backend });
    model.setDropout(0);
    const C = model.config.num_labels;
    const run = (outputHiddenStates: boolean): { logits: Float32Array; grad: Float32Array } => {
      const out = model.forward(input, { train: true, outputHiddenStates });
      const { probs } = crossEntropy(backend, "float32", out.logits, labels, B, C);
      model.zeroGrad();
      model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, B, C, 1 / B));
      return { logits: Float32Array.from(out.logits), grad: Float32Array.from(model.params.grad) };
    };
    const full = run(true); // every hidden state asked for: the last layer runs on all rows
    const cls = run(false);
    assert.ok(relErr(cls.logits, full.logits) < 1e-6, `logits rel ${relErr(cls.logits, full.logits)}`);
    assert.ok(relErr(cls.grad, full.grad) < 1e-5, `gradients rel ${relErr(cls.grad, full.grad)}`);
    assert.ok(maxAbs(full.grad) > 0);
  });
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] zeroGrad over stale gradients, then two accumulated micro-batches, equals the whole batch's gradient`, () => {
    const { input: all, labels: allLabels } = referenceData(REAL);
    const { batch: B, seqLen: T } = all;
    const { model } = loadModelFromDir(TINY, { backend });
    model.setDropout(0);
    const C = model.config.num_labels;
    const pass = (from: number, to: number): void => {
      const slice = (a: Int32Array): Int32Array => a.slice(from * T, to * T);
      const input = { inputIds: slice(all.inputIds), attentionMask: slice(all.attentionMask), tokenTypeIds: slice(all.tokenTypeIds), batch: to - from, seqLen: T };
      const out = model.forward(input, { train: true });
      const labels = allLabels.slice(from, to);
      const { probs } = crossEntropy(backend, "float32", out.logits, labels, to - from, C);
      model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, to - from, C, 1 / B));
    };
    model.zeroGrad();
    pass(0, B);
    const whole = Float32Array.from(model.params.grad);
    model.params.grad.fill(123); // stale values zeroGrad must not let through
    model.zeroGrad();
    const half = Math.floor(B / 2);
    pass(0, half);
    pass(half, B);
    assert.ok(relErr(model.params.grad, whole) < 1e-5, `rel ${relErr(model.params.grad, whole)}`);
  });
}
