/** The arena hands the same buffers out again after reset, and releases only lengths a whole pass left unused. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Arena } from "../../src/model/arena.js";

test("reset recycles every buffer; releaseUnused drops only lengths not handed out since the last release", () => {
  const a = new Arena("float32");
  const x = a.float(10), y = a.float(20), h = a.u16(10);
  a.reset(); // a scratch arena is reset per module: a module that uses other lengths must not lose these
  const z = a.float(30);
  a.reset();
  assert.equal(a.float(10), x, "length 10 survives a reset in which it was not used");
  assert.equal(a.float(20), y);
  assert.equal(a.u16(10), h);
  assert.notEqual(a.float(10), x, "a second buffer of a length in use is a new one");
  a.reset();
  a.releaseUnused(); // pass boundary: 10, 20 and 30 were all used during the pass
  assert.equal(a.float(30), z);
  a.reset();
  a.releaseUnused(); // this pass used only length 30
  assert.notEqual(a.float(10), x, "length 10 was released");
  assert.equal(a.float(30), z);
});
