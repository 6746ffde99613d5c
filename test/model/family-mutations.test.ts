/**
 * The family parity checks can fail: with the model deliberately broken as issue 17 names (RoBERTa's positions from
 * 0, ALBERT's shared layer keeping only one use's gradient, DistilBERT's head without its ReLU, ERNIE without its
 * task-type row), the same comparisons as families.test.ts must reject the result.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Backend } from "../../src/backend/types.js";
import { tsBackend } from "../../src/backend/ts.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import type { TaskModel } from "../../src/model/task-model.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import { relErr } from "../helpers.js";
import { familyDir, familyReference } from "./family-reference.js";

function model(name: string, backend: Backend = tsBackend): TaskModel {
  const m = loadModelFromDir(familyDir(name), { backend }).model;
  m.setDropout(0);
  return m;
}

function logitsError(name: string, m: TaskModel): number {
  const ref = familyReference(name);
  const f = SafetensorsFile.open(join(ref.dir, "reference", "forward.safetensors"));
  try {
    return relErr(m.forward(ref.input, { train: false }).logits, f.float("logits"));
  } finally {
    f.close();
  }
}

/** The largest relative gradient error over the parameters (key biases, analytically zero, left out). */
function worstGradientError(name: string, m: TaskModel): number {
  const ref = familyReference(name);
  const grads = SafetensorsFile.open(join(ref.dir, "reference", "grads.safetensors"));
  try {
    const B = ref.input.batch;
    const C = m.config.num_labels;
    const out = m.forward(ref.input, { train: true });
    const { probs } = crossEntropy(m.backend, "float32", out.logits, ref.labels, B, C);
    m.zeroGrad();
    m.backward(out.cache!, crossEntropyGrad(m.backend, "float32", probs, ref.labels, B, C, 1 / B));
    const zero = new Set(ref.manifest.zero_gradient_params);
    return Math.max(...m.params.specs.filter((s) => !zero.has(s.name)).map((s) => relErr(m.params.gradOf(s.name), grads.float(`grad.${s.name}`))));
  } finally {
    grads.close();
  }
}

test("the unbroken models pass (so the failures below are the mutations')", () => {
  for (const name of ["roberta-tiny", "xlm-roberta-tiny", "distilbert-tiny", "ernie-tiny"]) assert.ok(logitsError(name, model(name)) < 1e-5, name);
  assert.ok(worstGradientError("albert-tiny", model("albert-tiny")) < 1e-4);
});

test("RoBERTa / XLM-R with positions 0…T−1 instead of from padding_idx + 1 fail the logits check", () => {
  for (const name of ["roberta-tiny", "xlm-roberta-tiny"]) {
    const m = model(name);
    Object.defineProperty(m, "family", { value: { ...m.family, positions: "absolute" } });
    const e = logitsError(name, m);
    assert.ok(e > 1e-2, `${name}: ${e}`);
  }
});

test("ALBERT's shared layer with the gradient of one use only fails the gradient check", () => {
  const m = model("albert-tiny");
  // Every application's backward overwrites the shared group's gradient instead of adding to it.
  const internals = m as unknown as { layerBackward: (...a: unknown[]) => unknown; pass: { gradStale: boolean[] } };
  const layerBackward = internals.layerBackward.bind(m);
  const shared = m.params.specs.filter((s) => s.name.includes("albert_layer_groups"));
  internals.layerBackward = (...args: unknown[]) => {
    for (const s of shared) {
      if (s.kind === "linear") internals.pass.gradStale[s.index] = true;
      else m.params.grad.fill(0, s.offset, s.offset + s.size);
    }
    return layerBackward(...args);
  };
  const e = worstGradientError("albert-tiny", m);
  assert.ok(e > 1e-2, `${e}`);
});

test("DistilBERT's head without its ReLU fails the logits check", () => {
  const noRelu: Backend = {
    ...tsBackend,
    activationForward: (kind, x, y, n) => (kind === "relu" ? y.set(x.subarray(0, n)) : tsBackend.activationForward(kind, x, y, n)),
  };
  const e = logitsError("distilbert-tiny", model("distilbert-tiny", noRelu));
  assert.ok(e > 1e-2, `${e}`);
});

test("ERNIE without its task-type row fails the logits check", () => {
  const m = model("ernie-tiny");
  m.params.value("ernie.embeddings.task_type_embeddings.weight").fill(0);
  const e = logitsError("ernie-tiny", m);
  assert.ok(e > 1e-2, `${e}`);
});
