/** The embedded default and the API example run end to end; predict's stdin, CSV output and --top-labels. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, ROOT, tempDir } from "../helpers.js";

test("weitiao demo trains, evaluates, writes the report and predicts three sentences", () => {
  const out = join(tempDir(), "demo");
  const r = spawnSync(process.execPath, [CLI, "demo", "--output-dir", out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Epoch 1 \| Loss: \d\.\d{4} \| Accuracy: \d\.\d{4} \| Val Loss: \d\.\d{4} \| Val Accuracy: \d\.\d{4}$/m);
  assert.match(r.stdout, /validation accuracy: \d\.\d{4}/);
  // pretrain, then fine-tune: the masked LM's perplexity falls, and both fine-tunings are compared epoch by epoch
  const ppl = /pretrained: validation perplexity (\d+) after epoch 1 → (\d+) after epoch 20/.exec(r.stdout);
  assert.ok(ppl && Number(ppl[2]) < Number(ppl[1]) / 10, r.stdout);
  assert.match(r.stdout, /^fill-mask: 物流很\[MASK\]，包装完好 → .+ \(0\.\d{3}\), .+ \(0\.\d{3}\), .+ \(0\.\d{3}\)$/m);
  assert.match(r.stdout, /^validation accuracy per epoch: from the pretrained model (\d\.\d{4} ){4}\| from the random init \d\.\d{4}( \d\.\d{4}){3}$/m);
  assert.match(r.stdout, /^(pretraining helped|pretraining did not help|mixed|no difference)/m);
  for (const f of ["config.json", "model.safetensors"]) assert.ok(existsSync(join(`${out}-mlm`, f)), `the pretrained model: ${f}`);
  assert.deepEqual(JSON.parse(readFileSync(join(`${out}-mlm`, "config.json"), "utf8")).architectures, ["BertForMaskedLM"]);
  assert.equal((r.stdout.match(/^predict: .+ → (正面|负面) \(\d\.\d{3}\)$/gm) ?? []).length, 3);
  for (const f of ["report.html", "metrics.json", "model.safetensors", "config.json"]) assert.ok(existsSync(join(out, f)), f);
});

test("the library example in examples/ runs", () => {
  const out = join(tempDir(), "example");
  const r = spawnSync(process.execPath, [join(ROOT, "dist", "examples", "classify-reviews.js"), out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /validation accuracy \d\.\d{4}, model in /);
  assert.equal(r.stdout.trim().split("\n").filter((l) => /^(正面|负面)\t\d\.\d{3}$/.test(l)).length, 2);
});

test("predict: stdin (plain lines and JSONL), CSV output, --top-labels", () => {
  const out = join(tempDir(), "m");
  assert.equal(spawnSync(process.execPath, [CLI, "demo", "--output-dir", out, "--epochs", "1", "--pretrain-epochs", "0"], { encoding: "utf8" }).status, 0);
  const plain = spawnSync(process.execPath, [CLI, "predict", "--model", out, "--input", "-", "--top-labels", "1"], { input: "好吃\n{\"text\":\"难吃\"}\n", encoding: "utf8" });
  assert.equal(plain.status, 0, plain.stderr);
  const rows = plain.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 2);
  assert.equal(Object.keys(rows[0].probabilities).length, 1);
  assert.equal(Object.keys(rows[0].probabilities)[0], rows[0].label);
  const csv = join(tempDir(), "p.csv");
  const c = spawnSync(process.execPath, [CLI, "predict", "--model", out, "--text", "好,吃", "还行", "--output", csv], { encoding: "utf8" });
  assert.equal(c.status, 0, c.stderr);
  const lines = readFileSync(csv, "utf8").trim().split("\n");
  assert.equal(lines[0], "text,label,score,prob_负面,prob_正面");
  assert.match(lines[1]!, /^"好,吃",(正面|负面),0\.\d+,0\.\d+,0\.\d+$/);
});

test("a reader that closes stdout early (| head) does not stop training: exit 0, model saved, no EPIPE", async () => {
  const out = join(tempDir(), "piped");
  const child = spawn(process.execPath, [CLI, "demo", "--output-dir", out, "--epochs", "1", "--pretrain-epochs", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.once("data", () => child.stdout.destroy()); // like `head -1`
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE/);
  assert.ok(existsSync(join(out, "model.safetensors")));
});
