/** One HF tokenizers case (the cases.json record format of the fixtures) checked against our tokenizer. */
import assert from "node:assert/strict";
import type { BertTokenizer } from "../../src/tokenizer/index.js";

export interface Case {
  text?: string; text_pair?: string; batch?: string[]; truncation?: boolean; max_length?: number; padding?: string;
  tokens?: string[] | string[][]; input_ids: number[] | number[][]; token_type_ids: number[] | number[][]; attention_mask: number[] | number[][];
}

/** Tokens, ids, type ids and mask equal; a batch is padded as the case says (its tokens are checked where recorded). */
export function checkCase(tk: BertTokenizer, c: Case): void {
  const opts = c.truncation ? { maxLength: c.max_length } : {};
  const label = JSON.stringify(c.text ?? c.batch) + (c.text_pair ? ` / ${JSON.stringify(c.text_pair)}` : "") + (c.truncation ? ` ≤ ${c.max_length}` : "");
  if (c.batch) {
    const encs = tk.padBatch(c.batch.map((t) => tk.encode(t, null, opts)), c.padding === "max_length" ? c.max_length : undefined);
    if (c.tokens) assert.deepEqual(encs.map((e) => e.tokens), c.tokens, label);
    assert.deepEqual(encs.map((e) => e.inputIds), c.input_ids, label);
    assert.deepEqual(encs.map((e) => e.tokenTypeIds), c.token_type_ids, label);
    assert.deepEqual(encs.map((e) => e.attentionMask), c.attention_mask, label);
  } else {
    const e = tk.encode(c.text!, c.text_pair ?? null, opts);
    assert.deepEqual(e.tokens, c.tokens, label);
    assert.deepEqual(e.inputIds, c.input_ids, label);
    assert.deepEqual(e.tokenTypeIds, c.token_type_ids, label);
    assert.deepEqual(e.attentionMask, c.attention_mask, label);
  }
}
