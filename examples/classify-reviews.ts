/**
 * The library API end to end: fine-tune the bundled tiny model on the bundled reviews, then classify new text.
 * Run it with `npm run build && node dist/examples/classify-reviews.js [output-dir]`.
 * In your own project the import is `from "weitiao"`.
 */
import { join } from "node:path";
import { loadModel, predict, train } from "../src/index.js";
import { DEMO_DATA_DIR } from "../src/io/resolve.js";

const outputDir = process.argv[2] ?? "weitiao-example-output";

const run = await train({
  model: "demo", // or "./bert-base-chinese", or a hub id such as "hfl/chinese-roberta-wwm-ext"
  trainFile: join(DEMO_DATA_DIR, "train.csv"),
  validationFile: join(DEMO_DATA_DIR, "validation.csv"),
  outputDir,
  epochs: 3,
  learningRate: 1e-3,
  maxLength: 64,
  log: (line) => console.error(line),
});
console.log(`validation accuracy ${run.eval?.accuracy.toFixed(4)}, model in ${run.outputDir}`);

const classifier = await loadModel(outputDir);
for (const p of predict(classifier, [{ text: "快递很快，东西很好" }, { text: "质量很差，不推荐" }])) {
  console.log(`${p.label}\t${p.score.toFixed(3)}`);
}
