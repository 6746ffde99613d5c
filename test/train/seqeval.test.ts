/** Entity scores (src/train/seqeval.ts) on hand-counted cases, as seqeval's default mode counts them. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { entities, seqeval } from "../../src/train/seqeval.js";
import { aggregate, groupEntities } from "../../src/api/predict-tokens.js";
import { tagScheme, wordWindows } from "../../src/data/tokens.js";

test("chunks: B/I runs, an I- without B- starts one, adjacent B- of one type are two, a type change ends one, BIOES", () => {
  assert.deepEqual(entities(["B-PER", "I-PER", "O", "B-LOC"]), [{ type: "PER", start: 0, end: 1 }, { type: "LOC", start: 3, end: 3 }]);
  assert.deepEqual(entities(["O", "I-PER", "I-PER", "O"]), [{ type: "PER", start: 1, end: 2 }]);
  assert.deepEqual(entities(["B-PER", "B-PER"]), [{ type: "PER", start: 0, end: 0 }, { type: "PER", start: 1, end: 1 }]);
  assert.deepEqual(entities(["B-PER", "I-LOC"]), [{ type: "PER", start: 0, end: 0 }, { type: "LOC", start: 1, end: 1 }]);
  assert.deepEqual(entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"]), [{ type: "PER", start: 0, end: 0 }, { type: "LOC", start: 1, end: 3 }]);
  assert.deepEqual(entities(["O", "O"]), []);
});

test("micro precision/recall/F1, per type, and word accuracy", () => {
  const gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]];
  const pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "B-LOC"]];
  const s = seqeval(gold, pred);
  // gold: PER(0-1), LOC(3), ORG(0-1) → 3; predicted: PER(0-1) right, ORG(0-0) wrong, LOC(2) wrong → 3; 1 right
  assert.equal(s.precision, 1 / 3);
  assert.equal(s.recall, 1 / 3);
  assert.ok(Math.abs(s.f1 - 1 / 3) < 1e-12);
  assert.equal(s.accuracy, 4 / 7);
  assert.deepEqual(s.perType.PER, { precision: 1, recall: 1, f1: 1, number: 1 });
  assert.deepEqual(s.perType.LOC, { precision: 0, recall: 0, f1: 0, number: 1 });
  // An entity cut short (by a window boundary, or a wrong end) is wrong as a whole.
  assert.equal(seqeval([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]]).f1, 0);
});

test("a word's tag from its pieces: first, max and average as HF's word-level aggregation strategies", () => {
  const probs = [[0.6, 0.4], [0.1, 0.9]];
  assert.deepEqual(aggregate(probs, "first"), { tag: 0, score: 0.6 });
  assert.deepEqual(aggregate(probs, "max"), { tag: 1, score: 0.9 });
  const avg = aggregate(probs, "average");
  assert.equal(avg.tag, 1);
  assert.ok(Math.abs(avg.score - 0.65) < 1e-12);
});

test("the confusion of entity types is counted span for span, misses in column O and spurious entities in row O", () => {
  const gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]];
  const pred = [["B-LOC", "I-LOC", "O", "B-LOC", "B-PER"], ["B-ORG", "I-ORG"]];
  const { types, matrix } = seqeval(gold, pred).confusion;
  assert.deepEqual(types, ["LOC", "ORG", "PER", "O"]);
  // PER(0-1) predicted LOC; LOC(3) right; PER(4) spurious; ORG(0) missed (predicted ORG(0-1) is another span, spurious)
  assert.deepEqual(matrix, [
    [1, 0, 0, 0],
    [0, 0, 0, 1],
    [1, 0, 0, 0],
    [0, 1, 1, 0],
  ]);
});

test("entity groups as HF's group_entities: a B- starts a group, I- of the same type joins, O is left out; BIOES closes at E-/S-", () => {
  const at = (tags: string[]) => groupEntities(tags.map((tag, i) => ({ tag, score: 1, start: i, end: i + 1 }))).map((g) => [g[0]!.start, g.at(-1)!.end]);
  assert.deepEqual(at(["B-PER", "I-PER", "O", "I-LOC", "I-LOC"]), [[0, 2], [3, 5]]);
  assert.deepEqual(at(["B-PER", "B-PER", "I-LOC"]), [[0, 1], [1, 2], [2, 3]]);
  assert.deepEqual(at(["I-PER", "I-PER"]), [[0, 2]], "an I- without B- starts a group");
  assert.deepEqual(at(["B-PER", "E-PER", "I-PER", "S-LOC", "S-LOC"]), [[0, 2], [2, 3], [3, 4], [4, 5]]);
});

test("tagging schemes are told apart: BIO, IOB1 (an entity opened by I-), BIOES", () => {
  const ex = (...rows: string[][]) => rows.map((tags) => ({ words: tags.map(() => "x"), tags, file: "f", line: 1 }));
  assert.equal(tagScheme(ex(["B-PER", "I-PER", "O", "B-LOC"])), "BIO (IOB2)");
  assert.equal(tagScheme(ex(["B-PER", "I-PER"], ["O", "I-LOC", "I-LOC", "B-LOC"])), "IOB1");
  assert.equal(tagScheme(ex(["B-PER", "I-PER", "B-LOC"], ["I-PER", "I-LOC"])), "IOB1", "a type change under I- opens an entity");
  assert.equal(tagScheme(ex(["B-PER", "E-PER", "S-LOC", "O"])), "BIOES");
  assert.equal(tagScheme(ex(["PER", "O"])), "unprefixed");
});

test("whole-word windows: pieces within the budget, overlapping by whole words within the stride, always moving on", () => {
  const pieces = [2, 1, 3, 1, 1, 2, 0, 1];
  assert.deepEqual(wordWindows(pieces, 4), [[0, 2], [2, 4], [4, 8]]);
  // stride 2: the next window repeats the last words that fit in 2 tokens
  // (word 2 has 3 pieces, more than the stride: the window after [1, 3) starts at word 3)
  assert.deepEqual(wordWindows(pieces, 4, 2), [[0, 2], [1, 3], [3, 7], [5, 8]]);
  assert.deepEqual(wordWindows([5, 5], 4, 4), [[0, 1], [1, 2]], "a word longer than the budget stands alone");
  for (const [from, to] of wordWindows(pieces, 4, 3)) assert.ok(pieces.slice(from, to).reduce((a, b) => a + b, 0) <= 4 || to - from === 1);
});
