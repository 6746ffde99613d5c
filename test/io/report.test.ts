/** report.html is self-contained (no scripts, no external resources) and holds every section. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { train } from "../../src/api/train.js";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { TINY, tempDir } from "../helpers.js";

test("report.html and metrics.json after a run with validation", async () => {
  const out = join(tempDir(), "out");
  await train({
    model: TINY, trainFile: join(DEMO_DATA_DIR, "validation.csv"), validationSplit: 0.25, outputDir: out, epochs: 2,
    batchSize: 16, maxLength: 32, learningRate: 1e-3, loggingSteps: 1, backend: "typescript",
  });
  const html = readFileSync(join(out, "report.html"), "utf8");
  for (const section of ["training loss", "learning rate", "validation loss", "Epochs", "Confusion matrix", "Labels", "Hyperparameters"]) {
    assert.ok(html.includes(section), section);
  }
  assert.ok((html.match(/<svg /g) ?? []).length >= 3, "three inline charts");
  assert.ok(!/<script|src=|href=|@import|url\(/i.test(html), "no scripts or external resources");
  assert.ok(html.includes("负面") && html.includes("正面"));
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
  for (const k of ["train_runtime", "eval_loss", "eval_accuracy", "eval_macro_f1", "global_step"]) assert.ok(k in metrics, k);
});
