import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { BACKENDS } from "../backends.js";
import { loadModelFromDir } from "../../src/io/checkpoint.js";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { HF, REAL, TINY, relErr } from "../helpers.js";

for (const backend of BACKENDS) for (const [setName, dir] of [["real-tokens", REAL], ["hf-transformers", HF]] as const) {
  test(`[${backend.name}] forward matches ${setName} reference (logits, hidden states, pooler)`, () => {
    const ref = SafetensorsFile.open(join(dir, "forward.safetensors"));
    const { model } = loadModelFromDir(TINY, { backend });
    const [B, T] = ref.info("input_ids").shape as [number, number];
    const input = { inputIds: ref.int("input_ids"), attentionMask: ref.int("attention_mask"), tokenTypeIds: ref.int("token_type_ids"), batch: B, seqLen: T };
    const out = model.forward(input, { train: false, outputHiddenStates: true });
    assert.ok(relErr(out.logits, ref.float("logits")) < 1e-5, `logits rel ${relErr(out.logits, ref.float("logits"))}`);
    assert.ok(relErr(out.pooled, ref.float("pooler_output")) < 1e-5);
    const H = model.config.hidden_size;
    const mask = input.attentionMask;
    for (let i = 0; i <= model.numLayers; i++) {
      const e = relErr(out.hiddenStates![i]!, ref.float(`hidden_states.${i}`), (j) => mask[Math.floor(j / H)] === 1);
      assert.ok(e < 1e-5, `hidden_states.${i} rel ${e}`);
    }
    ref.close();
  });
}
