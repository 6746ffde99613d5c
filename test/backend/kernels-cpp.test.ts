/**
 * The C++ kernel test (native/test/kernels_test.cc, built and run by scripts/test-native.sh): the kernels called on
 * plain arrays, without node, against straightforward loops. Runs where g++ and oneDNN's headers are; skips with the
 * reason otherwise.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../helpers.js";

function missing(): string | false {
  // scripts/asan.sh runs it itself, built with the sanitizer, before the node tests (which run under libasan)
  if (process.env.WEITIAO_SKIP_KERNEL_TEST) return "WEITIAO_SKIP_KERNEL_TEST set (scripts/asan.sh runs the C++ test itself)";
  const cxx = process.env.CXX || "g++";
  const version = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  if (version.error || version.status !== 0) return `no C++ compiler (${cxx})`;
  const header = spawnSync(cxx, ["-x", "c++", "-std=c++17", "-fsyntax-only", "-"], { input: "#include <oneapi/dnnl/dnnl.hpp>\n", encoding: "utf8" });
  if (header.status !== 0) return "oneDNN's headers are not installed (apt-get install libdnnl-dev)";
  return false;
}

test("the C++ kernel test passes (scripts/test-native.sh)", { skip: missing() }, () => {
  const r = spawnSync("sh", [join(ROOT, "scripts", "test-native.sh")], { cwd: ROOT, encoding: "utf8" });
  const failed = `${r.stdout}\n${r.stderr}`.split("\n").filter((l) => /^FAIL|failed|error/i.test(l)).slice(0, 20).join("\n");
  assert.equal(r.status, 0, `scripts/test-native.sh exited ${r.status}:\n${failed || r.stderr}`);
  assert.match(r.stdout, /\b0 of \d+ checks failed/);
});
