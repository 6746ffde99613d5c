/** Entity scores (src/train/seqeval.ts) on hand-counted cases, as seqeval's default mode counts them. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { entities, seqeval } from "../../src/train/seqeval.js";
import { aggregate } from "../../src/api/predict-tokens.js";

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
