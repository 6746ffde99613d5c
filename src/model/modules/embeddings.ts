/**
 * The embeddings module (task-model.ts runs it), forward and backward side by side: LN(word + position + token type)
 * → dropout, and the family's projection to hidden_size where it has one; the ids checked against their tables first.
 */
import type { FArray } from "../../backend/types.js";
import { type BertConfig, maxSequenceLength } from "../config.js";
import type { DropoutCache, DropoutStream } from "../dropout.js";
import type { EmbeddingNames, Family } from "../families/family.js";
import type { PassContext } from "../pass.js";
import type { ModelInput } from "../task-model.js";
import { WeitiaoError } from "../../util/errors.js";
import { type TokenRows, toPacked } from "./rows.js";

export interface EmbeddingCache {
  /** Token ids, position ids and token types of the rows (packed when the batch is). */
  ids: Int32Array;
  posIds: Int32Array;
  typeIds: Int32Array;
  sum: FArray;
  mean: FArray;
  rstd: FArray;
  drop: DropoutCache;
  /** The projection's input (the embeddings' output), when the family projects to hidden_size. */
  projected: FArray;
}

/**
 * Embeddings: LN(word[ids] + position[pos] + token_type[tt] (+ ERNIE's task type 0)) → dropout, embedding_size
 * wide, then the family's projection to hidden_size where it has one (ELECTRA, ALBERT).
 */
export function embeddingsForward(pass: PassContext, family: Family, names: EmbeddingNames, projection: string | null, zeroRow: FArray, input: ModelInput, tokens: TokenRows, p: number, stream: DropoutStream | null, save: boolean): { out: FArray; cache: EmbeddingCache | null } {
  const T = input.seqLen;
  const E = pass.config.embedding_size;
  const { rows, starts, lengths } = tokens;
  const packed = (a: Int32Array): Int32Array => (tokens.packed ? toPacked(a, new Int32Array(rows), 1, tokens, T) : a);
  const ids = packed(input.inputIds);
  // DistilBERT has no token types: its rows read a zero row instead of a table
  const typeIds = names.tokenType ? packed(input.tokenTypeIds) : new Int32Array(rows);
  const posIds = new Int32Array(rows);
  const pad = pass.config.pad_token_id;
  starts.forEach((start, b) => {
    if (family.positions === "absolute") {
      for (let t = 0; t < lengths[b]!; t++) posIds[start + t] = t;
      return;
    }
    // RoBERTa's create_position_ids_from_input_ids: real tokens count up from padding_idx + 1, padding gets padding_idx
    for (let t = 0, seen = 0; t < lengths[b]!; t++) {
      const real = ids[start + t] !== pad;
      if (real) seen++;
      posIds[start + t] = real ? pad + seen : pad;
    }
  });
  checkIds(pass.config, names, ids, typeIds, rows, T);
  const sum = pass.alloc(rows * E);
  pass.backend.embeddingForward(
    ids, posIds, typeIds,
    pass.w(`${names.word}.weight`), pass.w(`${names.position}.weight`), names.tokenType ? pass.w(`${names.tokenType}.weight`) : zeroRow,
    sum, rows, E,
  );
  if (names.taskType) {
    // task_type_ids default to zeros (the tokenizer makes none): row 0 of the table is added to every row
    const task = pass.w(`${names.taskType}.weight`);
    for (let r = 0; r < rows; r++) for (let j = 0; j < E; j++) sum[r * E + j]! += task[j]!;
  }
  const normed = pass.alloc(rows * E);
  const mean = pass.alloc(rows);
  const rstd = pass.alloc(rows);
  pass.backend.layerNormForward(sum, pass.w(`${names.norm}.weight`), pass.w(`${names.norm}.bias`), normed, mean, rstd, rows, E, pass.config.layer_norm_eps);
  const { y, cache: drop } = pass.dropout(normed, p, rows * E, stream, save);
  const out = projection ? pass.linear(projection, y, rows, E, pass.config.hidden_size) : y;
  return { out, cache: save ? { ids, posIds, typeIds, sum, mean, rstd, drop, projected: y } : null };
}

/** Every id must index its table: a tokenizer larger than config.json's vocab_size, or text pairs with a
 *  type_vocab_size of 1, are the user's error to fix, named here once per batch before any gather. */
export function checkIds(c: BertConfig, names: EmbeddingNames, ids: Int32Array, typeIds: Int32Array, rows: number, seqLen: number): void {
  const maxLength = maxSequenceLength(c);
  if (seqLen > maxLength) {
    throw new WeitiaoError(`sequence length ${seqLen} is beyond the ${maxLength} positions max_position_embeddings ${c.max_position_embeddings} in config.json allows (lower --max-length)`);
  }
  const types = names.tokenType ? c.type_vocab_size : 1;
  for (let r = 0; r < rows; r++) {
    const id = ids[r]!;
    if (!(id >= 0 && id < c.vocab_size)) {
      throw new WeitiaoError(`token id ${id} is beyond the word embedding table (vocab_size ${c.vocab_size} in config.json): the tokenizer does not match the model`);
    }
    const t = typeIds[r]!;
    if (!(t >= 0 && t < types)) {
      throw new WeitiaoError(`token type id ${t} is beyond the token type table (type_vocab_size ${c.type_vocab_size} in config.json)${t === 1 ? ": this model cannot take text pairs" : ""}`);
    }
  }
}

export function embeddingsBackward(pass: PassContext, family: Family, names: EmbeddingNames, projection: string | null, dOut: FArray, c: EmbeddingCache): void {
  const E = pass.config.embedding_size;
  const rows = c.ids.length;
  const dy = projection ? pass.linearBack(projection, dOut, c.projected, rows, E, pass.config.hidden_size, true)! : dOut;
  const dNormed = pass.dropoutBack(dy, c.drop, rows * E);
  const dSum = pass.alloc(rows * E);
  pass.backend.layerNormBackward(dNormed, c.sum, c.mean, c.rstd, pass.w(`${names.norm}.weight`), dSum, pass.g(`${names.norm}.weight`), pass.g(`${names.norm}.bias`), rows, E);
  const pad = pass.config.pad_token_id;
  const gw = pass.g(`${names.word}.weight`);
  if (gw) pass.backend.embeddingBackward(c.ids, dSum, gw, rows, E, pad);
  // RoBERTa's position table has padding_idx too
  const gp = pass.g(`${names.position}.weight`);
  if (gp) pass.backend.embeddingBackward(c.posIds, dSum, gp, rows, E, family.positions === "after-padding" ? pad : -1);
  const gt = names.tokenType ? pass.g(`${names.tokenType}.weight`) : null;
  if (gt) pass.backend.embeddingBackward(c.typeIds, dSum, gt, rows, E, -1);
  const gTask = names.taskType ? pass.g(`${names.taskType}.weight`) : null;
  if (gTask) pass.backend.embeddingBackward(new Int32Array(rows), dSum, gTask, rows, E, -1);
}
