/** The arena bump-allocates views of a few chunks, hands the same memory out again after reset, and grows by chunks. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../src/model/arena.js";

const MB = 1 << 20;

/** [start, end) of a view in its chunk, with the chunk. */
const span = (a: ArrayBufferView): [ArrayBufferLike, number, number] => [a.buffer, a.byteOffset, a.byteOffset + a.byteLength];

test("views handed out in one pass never overlap, start on 64-byte lines, and come in the arena's dtype", () => {
  const a = new Arena("float32");
  const views: ArrayBufferView[] = [a.float(3), a.byte(5), a.u16(7), a.float(1000), a.zeros(10), a.byte(1)];
  for (const v of views) assert.equal(v.byteOffset % 64, 0);
  for (let i = 0; i < views.length; i++) {
    for (let j = i + 1; j < views.length; j++) {
      const [bi, si, ei] = span(views[i]!);
      const [bj, sj, ej] = span(views[j]!);
      assert.ok(bi !== bj || ei <= sj || ej <= si, `views ${i} and ${j} overlap`);
    }
  }
  assert.ok(views[0] instanceof Float32Array && views[2] instanceof Uint16Array);
  assert.ok(new Arena("float64").float(4) instanceof Float64Array);
});

test("after reset the same sequence of requests, or of other sizes, reuses the same memory", () => {
  const chunks: ArrayBuffer[] = [];
  const a = new Arena("float32", (c) => chunks.push(c));
  const first = [a.float(100), a.u16(300), a.float(2 * MB)];
  const capacity = a.capacity;
  a.reset();
  const again = [a.float(100), a.u16(300), a.float(2 * MB)];
  again.forEach((v, i) => assert.deepEqual(span(v), span(first[i]!)));
  a.reset();
  a.float(3 * MB); // another batch shape
  a.byte(123);
  assert.equal(a.capacity, capacity, "a pass that fits adds nothing");
  assert.equal(chunks.length, 1);
  const z = a.zeros(50);
  assert.ok(z.every((x) => x === 0), "zeros clears stale contents");
});

test("a pass that does not fit adds a chunk at least as large as the others together, seen before use", () => {
  const seen: ArrayBuffer[] = [];
  const a = new Arena("float32", (c) => {
    assert.ok(new Uint8Array(c).every((x) => x === 0), "a new chunk is untouched when announced");
    seen.push(c);
  });
  a.float(20 * MB); // 80 MB: one chunk
  const one = a.capacity;
  assert.ok(one >= 80 * MB && one % (2 * MB) === 0);
  const big = a.float(20 * MB); // does not fit in the rest of the first chunk
  assert.equal(seen.length, 2);
  assert.ok(a.capacity >= 2 * one);
  assert.equal(big.buffer, seen[1]);
  a.reset();
  const capacity = a.capacity;
  a.float(20 * MB);
  a.float(20 * MB);
  assert.equal(a.capacity, capacity, "the same pass again fits");
  assert.equal(seen.length, 2);
});
