/** report.html is self-contained (no scripts, no external resources) and holds every section. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { train } from "../../src/api/train.js";
import { DEMO_DATA_DIR } from "../../src/io/resolve.js";
import { TINY, tempDir } from "../helpers.js";

test("a confusion matrix of 15+ classes is drawn dense (TNEWS, CLUENER)", async () => {
  const { renderReport } = await import("../../src/io/report.js");
  const labels = Array.from({ length: 15 }, (_, i) => `类${i}`);
  const matrix = labels.map((_, i) => labels.map((__, j) => (i === j ? 9 : 1)));
  const html = renderReport({
    title: "t", result: { globalStep: 1, epochs: [], logHistory: [], totalSteps: 1, trainSeconds: 1, interrupted: false, samplesSeen: 1, stepsRun: 1, trainLoss: 0 },
    eval: { loss: 1, accuracy: 0.5, metrics: { accuracy: 0.5 }, classification: { accuracy: 0.5, macro_precision: 0, macro_recall: 0, macro_f1: 0, per_class: [], confusion: matrix } as never, logits: new Float32Array(0), probabilities: new Float32Array(0), predictions: new Int32Array(0) },
    test: null, labels, reports: {}, args: {}, samples: 1,
  });
  assert.ok(html.includes('<table class="cm dense">'));
});

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
  // a curve and an epoch-table column per validation metric; the title names files, not paths; set options shown
  for (const k of ["accuracy", "macro f1", "macro precision"]) assert.ok(html.includes(`<figcaption>validation ${k}</figcaption>`), k);
  assert.ok(html.includes("<th>validation accuracy</th>") && html.includes("<th>validation macro_f1</th>"));
  assert.match(html, /<title>weitiao: bert-tiny-chinese on validation\.csv<\/title>/);
  assert.ok(html.includes("<th>validationSplit</th>") && html.includes("<th>learningRate</th>"), "given options");
  assert.ok(!html.includes("<th>labelAllTokens</th>"), "options left at their default are not listed");
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8"));
  for (const k of ["train_runtime", "eval_loss", "eval_accuracy", "eval_macro_f1", "global_step"]) assert.ok(k in metrics, k);
});
