import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { EVERY_BACKEND } from "../backends.js";
import { initParameter, loadModelFromDir } from "../../src/io/checkpoint.js";
import type { Backend } from "../../src/backend/types.js";
import { TaskModel, type ModelInput } from "../../src/model/task-model.js";
import { parseBertConfig } from "../../src/model/config.js";
import { Rng } from "../../src/util/rng.js";
import { crossEntropy, crossEntropyGrad } from "../../src/train/loss.js";
import { REAL, TINY, maxAbs, referenceData, relErr } from "../helpers.js";

/** The backend, recording what `pick` takes from the arguments of every call to `kernel`. */
function spyOn<K extends "linearForward" | "attentionForward", R>(backend: Backend, kernel: K, pick: (args: Parameters<Backend[K]>) => R): { backend: Backend; seen: R[] } {
  const seen: R[] = [];
  const spy = new Proxy(backend, {
    get(target, key, receiver) {
      if (key !== kernel) return Reflect.get(target, key, receiver);
      return (...args: Parameters<Backend[K]>) => {
        seen.push(pick(args));
        (target[kernel] as (...a: Parameters<Backend[K]>) => void)(...args);
      };
    },
  });
  return { backend: spy, seen };
}

interface Pass {
  logits: Float32Array;
  grad: Float32Array;
  hidden: Float32Array[];
  /** Rows of the first layer's query projection. */
  queryRows: number;
}

function run(backend: Backend, input: ModelInput, labels: Int32Array, packTokens: boolean): Pass {
  const spy = spyOn(backend, "linearForward", (args) => args[4]); // the rows of every linear layer
  const { model } = loadModelFromDir(TINY, { backend: spy.backend });
  model.setDropout(0);
  model.packTokens = packTokens;
  const B = input.batch;
  const C = model.config.num_labels;
  const hidden = model.forward(input, { train: false, outputHiddenStates: true }).hiddenStates!.map((h) => Float32Array.from(h));
  spy.seen.length = 0;
  const out = model.forward(input, { train: true });
  const { probs } = crossEntropy(backend, "float32", out.logits, labels, B, C);
  model.zeroGrad();
  model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, B, C, 1 / B));
  return { logits: Float32Array.from(out.logits), grad: Float32Array.from(model.params.grad), hidden, queryRows: spy.seen[0]! };
}

/** Only the GEMMs' blocking differs between the layouts (other row counts), in bf16 too: rounding is per element. */
const TOLERANCE = 1e-6;
/**
 * Except on CPUs with AMX, where oneDNN's bf16 brgemm runs a row count that is not a multiple of its tile (the padded
 * layout's 120 rows) through a tail kernel that rounds differently (7.7e-5 seen; 1e-6 again under
 * ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16). A quarter of one bf16 rounding (2^-8) still fails every wrong-row mutation.
 */
const AMX = existsSync("/proc/cpuinfo") && /\bamx_bf16\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
const tolerance = (backend: Backend): number => (AMX && backend.name === "native-bf16" ? 1e-3 : TOLERANCE);

for (const backend of EVERY_BACKEND) {
  test(`[${backend.name}] a right-padded batch leaves its padding rows out, with the padded layout's logits, hidden states and gradients`, () => {
    const { input, labels } = referenceData(REAL);
    const { batch: B, seqLen: T } = input;
    const real = input.attentionMask.reduce((sum, m) => sum + m, 0);
    assert.ok(real < B * T / 2, "the fixture batch is mostly padding");
    const packed = run(backend, input, labels, true);
    const padded = run(backend, input, labels, false);
    // the real tokens and the fewest padding rows that make a multiple of the backend's rowCountMultiple (32)
    const multiple = backend.rowCountMultiple;
    assert.equal(multiple, 32);
    assert.ok(real % multiple !== 0, "the fixture batch needs some padding rows kept");
    assert.equal(packed.queryRows, Math.ceil(real / multiple) * multiple);
    assert.equal(padded.queryRows, B * T);
    assert.ok(relErr(packed.logits, padded.logits) < TOLERANCE, `logits rel ${relErr(packed.logits, padded.logits)}`);
    assert.ok(relErr(packed.grad, padded.grad) < TOLERANCE, `gradients rel ${relErr(packed.grad, padded.grad)}`);
    assert.ok(maxAbs(padded.grad) > 0);
    const H = packed.hidden[0]!.length / (B * T);
    const isReal = (j: number): boolean => input.attentionMask[Math.floor(j / H)] === 1;
    packed.hidden.forEach((h, i) => {
      const e = relErr(h, padded.hidden[i]!, isReal);
      assert.ok(e < TOLERANCE, `hidden_states.${i} rel ${e}`);
    });
  });

  test(`[${backend.name}] a batch that is not right-padded runs every row`, () => {
    const { input, labels } = referenceData(REAL);
    const T = input.seqLen;
    const mask = Int32Array.from(input.attentionMask);
    mask[T + 1] = 0; // a hole inside the second sequence
    const holed = { ...input, attentionMask: mask };
    const a = run(backend, holed, labels, true);
    const b = run(backend, holed, labels, false);
    assert.equal(a.queryRows, input.batch * T);
    assert.deepEqual(a.logits, b.logits);
    assert.deepEqual(a.grad, b.grad);
  });
}

// The fixture's heads (size 8) are below the native bf16 per-head kernels' tile: a random model whose heads are 16 wide
// runs attention on the packed rows on every backend (AttentionShape.starts), at a padded length of 32 and of 30 (which
// the native bf16 backend's attention takes rounded up to 32).
const PACKED_CASES = [
  { T: 32, lengths: [32, 20, 7, 13], kept: [32, 20, 7 + 5, 13 + 19] }, // 72 real rows, 96 kept: padding rows of the last two
  { T: 30, lengths: [30, 20, 7, 13], kept: [30, 20, 7 + 9, 13 + 17] }, // 70 real rows, 96 kept
];
for (const backend of EVERY_BACKEND) for (const { T, lengths, kept } of PACKED_CASES) {
  test(`[${backend.name}] attention on a packed batch's rows gives the padded layout's logits and gradients (T = ${T})`, (t) => {
    const config = parseBertConfig({
      vocab_size: 60, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64,
      max_position_embeddings: 64, type_vocab_size: 2, initializer_range: 0.3, num_labels: 2,
    }, "test");
    const rng = new Rng(8);
    const B = 4;
    const input: ModelInput = {
      inputIds: Int32Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)]! ? 1 + Math.floor(rng.next() * 59) : 0)),
      attentionMask: Int32Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)]! ? 1 : 0)),
      tokenTypeIds: new Int32Array(B * T), batch: B, seqLen: T,
    };
    const labels = Int32Array.from([0, 1, 1, 0]);
    const spy = spyOn(backend, "attentionForward", ([args]) => args.shape);
    const shapes = spy.seen;
    const pass = (packTokens: boolean): { logits: Float32Array; grad: Float32Array } => {
      const model = new TaskModel(config, spy.backend);
      const init = new Rng(5);
      for (const s of model.params.specs) initParameter(model, s.name, init);
      model.setDropout(0);
      model.packTokens = packTokens;
      const out = model.forward(input, { train: true });
      const { probs } = crossEntropy(backend, "float32", out.logits, labels, B, 2);
      model.zeroGrad();
      model.backward(out.cache!, crossEntropyGrad(backend, "float32", probs, labels, B, 2, 1 / B));
      return { logits: Float32Array.from(out.logits), grad: Float32Array.from(model.params.grad) };
    };
    const padded = pass(false);
    shapes.length = 0;
    const packed = pass(true);
    if (!shapes[0]!.starts) {
      assert.equal(backend.name, "native-bf16", "the TS and native fp32 backends take packed rows at any shape");
      t.skip("built without the per-head AVX512-BF16 kernels");
      return;
    }
    assert.deepEqual(Array.from(shapes[0]!.lengths!), kept);
    assert.equal(shapes[0]!.seqLen, backend.name === "native-bf16" ? 32 : T, "attention's padded length (rounded up to 16 for the bf16 kernels)");
    assert.ok(relErr(packed.logits, padded.logits) < tolerance(backend), `logits rel ${relErr(packed.logits, padded.logits)}`);
    assert.ok(relErr(packed.grad, padded.grad) < tolerance(backend), `gradients rel ${relErr(packed.grad, padded.grad)}`);
    assert.ok(maxAbs(padded.grad) > 0);
  });
}
