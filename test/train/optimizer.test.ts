/** Gradient clipping fused into AdamW gives bit-for-bit the update of clip-in-place followed by AdamW. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import type { TaskModel } from "../../src/model/task-model.js";
import { AdamW, clipCoefficient } from "../../src/train/optimizer.js";
import { BACKENDS } from "../backends.js";
import { REAL, TINY, referenceData } from "../helpers.js";

/** torch.nn.utils.clip_grad_norm_ as a separate pass: gradients scaled in place; the norm before clipping. */
function clipGradNorm(model: TaskModel, maxNorm: number): number {
  const { params, backend, trainable } = model;
  const { norm, coef } = clipCoefficient(model, maxNorm);
  if (coef < 1) {
    params.specs.forEach((s, i) => {
      if (trainable[i]) backend.scale(params.grad.subarray(s.offset, s.offset + s.size), s.size, coef);
    });
  }
  return norm;
}

for (const backend of BACKENDS) {
  test(`[${backend.name}] clipping fused into AdamW equals clip_grad_norm_ then AdamW, bit for bit`, () => {
    const { input } = referenceData(REAL);
    const labels = Int32Array.from({ length: input.batch }, (_, i) => i % 2);
    const run = (fused: boolean): { params: Float32Array; norm: number } => {
      const { model } = loadModelFromDir(TINY, { backend });
      model.setDropout(0);
      const opt = new AdamW(model, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
      let norm = 0;
      for (let step = 0; step < 2; step++) {
        model.zeroGrad();
        const out = model.forward(input, { train: true });
        const C = model.config.num_labels;
        const { probs } = crossEntropy(backend, "float32", out.logits, labels, input.batch, C);
        model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, input.batch, C, 1 / input.batch));
        if (fused) {
          const c = clipCoefficient(model, 0.05);
          norm = c.norm;
          assert.ok(c.coef < 1, "the clip really applies");
          opt.step(1e-3, undefined, c.coef);
        } else {
          norm = clipGradNorm(model, 0.05);
          opt.step(1e-3);
        }
      }
      return { params: Float32Array.from(model.params.data as Float32Array), norm };
    };
    const a = run(false), b = run(true);
    assert.equal(b.norm, a.norm);
    assert.deepEqual(b.params, a.params);
  });
}
