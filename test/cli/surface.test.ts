/**
 * The surface an HF Trainer user meets first (issue 18), run through the built CLI from fresh temp folders on real
 * files: TSV quoting, header-less files and JSONL's optional text_pair in every command, the trained --max-length
 * as predict/evaluate's default, what happens to a non-empty --output-dir, a mistyped model path, an lr typo.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TINY, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "./cli-helpers.js";

const ROWS: [string, number][] = [
  ["这部电影太好看了", 1], ["烂片，浪费时间。", 0], ["演员很棒", 1], ["剧情无聊", 0], ["非常精彩，强烈推荐", 1], ["太差了，不推荐", 0],
];

/** A quick tiny-model run into `out` (fp32, no dropout, two steps). */
function train(file: string, out: string, extra: string[] = []): ReturnType<typeof run> {
  return run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--max-steps", "2", "--batch-size", "4",
    "--dropout", "0", "--learning-rate", "1e-3", "--precision", "fp32", ...extra]);
}

test("a .tsv with bare quotes in its fields trains as written (TSV is not RFC 4180); --quoting csv refuses it naming --quoting none", () => {
  const dir = tempDir();
  const file = join(dir, "tnews.tsv");
  // TNEWS-like rows: a quote opens a field and never closes it, another sits inside a field.
  writeFileSync(file, ["text\tlabel", '"震惊"！这部电影\t1', '烂片"浪费时间\t0', ...ROWS.slice(2).map(([t, l]) => `${t}\t${l}`)].join("\n") + "\n");
  const ok = train(file, join(dir, "out"));
  assert.equal(ok.code, 0, ok.stderr);
  const report = JSON.parse(readFileSync(join(dir, "out", "data_report.json"), "utf8")) as { train: { rows: number } };
  assert.equal(report.train.rows, ROWS.length, "every row read, the quotes kept as text");
  const strict = train(file, join(dir, "out2"), ["--quoting", "csv"]);
  assertOneLineError(strict, /tnews\.tsv:\d+: malformed TSV .*read it with --quoting none/);
  assert.equal(existsSync(join(dir, "out2")), false);
  // predict and tokenize read .tsv the same way
  const p = run(["predict", "--model", join(dir, "out"), "--input", file]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout.trim().split("\n").length, ROWS.length);
  const t = run(["tokenize", "--model", TINY, "--input", file]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout.split("\n")[0]!, /"\\""/, "the quote is a token of the first row");
});

test("predict, evaluate and tokenize take --no-header like train; JSONL text_pair is optional row by row in train and evaluate", () => {
  const dir = tempDir();
  const headerless = join(dir, "plain.csv");
  writeFileSync(headerless, ROWS.map(([t, l]) => `${t},${l}`).join("\n") + "\n");
  const out = join(dir, "out");
  const tr = train(headerless, out, ["--no-header", "--text-column", "0", "--label-column", "1"]);
  assert.equal(tr.code, 0, tr.stderr);
  const ev = run(["evaluate", "--model", out, "--input", headerless, "--no-header", "--text-column", "0", "--label-column", "1"]);
  assert.equal(ev.code, 0, ev.stderr);
  assert.equal((JSON.parse(ev.stdout) as { rows: number }).rows, ROWS.length, "the first line is data, not a header");
  const pr = run(["predict", "--model", out, "--input", headerless, "--no-header", "--text-column", "0"]);
  assert.equal(pr.code, 0, pr.stderr);
  assert.equal(pr.stdout.trim().split("\n").length, ROWS.length);
  const tk = run(["tokenize", "--model", out, "--input", headerless, "--no-header", "--text-column", "0"]);
  assert.equal(tk.code, 0, tk.stderr);
  assert.equal(tk.stdout.trim().split("\n").length, ROWS.length);

  // JSONL: some rows are pairs, some are not; train and evaluate take both (a pair row gets token type 1 tokens).
  const jsonl = join(dir, "mixed.jsonl");
  writeFileSync(jsonl, ROWS.map(([t, l], i) => JSON.stringify(i % 2 ? { text: t, text_pair: "评论", label: l } : { text: t, label: l })).join("\n") + "\n");
  const tj = train(jsonl, join(dir, "out-jsonl"));
  assert.equal(tj.code, 0, tj.stderr);
  const ej = run(["evaluate", "--model", join(dir, "out-jsonl"), "--input", jsonl]);
  assert.equal(ej.code, 0, ej.stderr);
  assert.equal((JSON.parse(ej.stdout) as { rows: number }).rows, ROWS.length);
  const single = join(dir, "single.jsonl");
  writeFileSync(single, ROWS.map(([t, l]) => JSON.stringify({ text: t, label: l })).join("\n") + "\n");
  const es = run(["evaluate", "--model", join(dir, "out-jsonl"), "--input", single]);
  assert.equal(es.code, 0, es.stderr);
  // the pair really is read: evaluating with and without it gives different losses
  assert.notEqual((JSON.parse(es.stdout) as { eval_loss: number }).eval_loss, (JSON.parse(ej.stdout) as { eval_loss: number }).eval_loss);
});

test("predict and evaluate cut inputs to the --max-length the model was trained with unless told otherwise", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const out = join(dir, "out");
  assert.equal(train(file, out, ["--max-length", "6"]).code, 0);
  const long = "这部电影的剧情非常精彩，演员的表演也很到位，强烈推荐大家去看";
  const logits = (extra: string[]): number[] => {
    const r = run(["predict", "--model", out, "--text", long, ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { logits: number[] }).logits;
  };
  assert.deepEqual(logits([]), logits(["--max-length", "6"]), "the default is the trained length");
  assert.notDeepEqual(logits([]), logits(["--max-length", "512"]), "the check can fail: a longer cut changes the logits");
  const evalFile = join(dir, "long.csv");
  writeFileSync(evalFile, `text,label\n${long},1\n${long}。,0\n`);
  const ev = (extra: string[]): number => (JSON.parse(run(["evaluate", "--model", out, "--input", evalFile, ...extra]).stdout) as { eval_loss: number }).eval_loss;
  assert.equal(ev([]), ev(["--max-length", "6"]));
});

test("a non-empty --output-dir: refused unless it is an earlier weitiao output (replaced whole) or --overwrite-output-dir is given", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const foreign = join(dir, "mine");
  mkdirSync(join(foreign, "checkpoint-500"), { recursive: true });
  writeFileSync(join(foreign, "notes.txt"), "keep me");
  const refused = train(file, foreign);
  assertOneLineError(refused, /--output-dir .*mine: is not empty \(checkpoint-500, notes\.txt\) and is not an earlier weitiao output; pass --overwrite-output-dir/);
  assert.equal(readFileSync(join(foreign, "notes.txt"), "utf8"), "keep me");
  assert.equal(existsSync(join(foreign, "config.json")), false, "nothing written");
  // HF's spelling works as it is pasted
  const forced = train(file, foreign, ["--overwrite_output_dir"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(existsSync(join(foreign, "checkpoint-500")), false, "the stale checkpoint is gone");
  assert.equal(existsSync(join(foreign, "config.json")), true);

  // A weitiao output is replaced whole: a second run leaves none of the first run's checkpoints behind.
  const out = join(dir, "out");
  assert.equal(train(file, out, ["--save-steps", "1"]).code, 0);
  assert.equal(existsSync(join(out, "checkpoint-1")), true);
  const again = train(file, out, ["--max-steps", "1"]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /held an earlier weitiao run's output: replaced/);
  assert.equal(existsSync(join(out, "checkpoint-1")), false);
  assert.equal(existsSync(join(out, "checkpoint-2")), false);
  assert.equal(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).global_step, 1);
});

test("a mistyped model path says no such folder first, offline or not; an lr typo such as 2e5 gets a warning naming 2e-5", () => {
  const dir = tempDir();
  const env = { ...process.env, HF_HUB_OFFLINE: "1", HF_HOME: join(dir, "hf") };
  const p = run(["predict", "--model", "my-modle", "--text", "好"], { cwd: dir, env });
  assertOneLineError(p, /^error: my-modle: no such model folder or file \(.*my-modle\), and as a hub model id: not in the cache/);
  const unreachable = { ...process.env, HF_ENDPOINT: "http://127.0.0.1:9", HF_HOME: join(dir, "hf"), HF_HUB_OFFLINE: "" };
  const q = run(["predict", "--model", "outputs/model", "--text", "好"], { cwd: dir, env: unreachable });
  assertOneLineError(q, /^error: outputs\/model: no such model folder or file .*, and as a hub model id: cannot reach/);

  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "out"), "--max-steps", "1", "--learning-rate", "2e5", "--precision", "fp32"]);
  assert.match(r.stderr, /warning: --learning-rate 200000 is above 1 .*did you mean 2e-5\?/);
  const fine = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "out2"), "--max-steps", "1", "--learning-rate", "2e-5", "--precision", "fp32"]);
  assert.equal(fine.code, 0, fine.stderr);
  assert.doesNotMatch(fine.stderr, /warning: --learning-rate/);
});

test("metrics.json's train_loss is the whole run's mean step loss (HF), an end-of-run line gives runtime and samples/s, --max-steps is stated as such", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", file, "--output-dir", out, "--epochs", "2", "--batch-size", "2",
    "--logging-steps", "1", "--learning-rate", "1e-3", "--precision", "fp32"]);
  assert.equal(r.code, 0, r.stderr);
  const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")) as { log_history: Record<string, number>[] };
  const steps = state.log_history.filter((e) => "loss" in e);
  assert.equal(steps.length, 6);
  const mean = steps.reduce((a, e) => a + e.loss!, 0) / steps.length;
  const metrics = JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")) as Record<string, number>;
  assert.ok(Math.abs(metrics.train_loss! - mean) < 1e-6 * Math.abs(mean), `${metrics.train_loss} vs ${mean}`);
  const lastEpoch = steps.slice(3).reduce((a, e) => a + e.loss!, 0) / 3;
  assert.ok(Math.abs(metrics.train_loss! - lastEpoch) > 1e-6, "not the last epoch's mean");
  assert.ok(metrics.train_samples_per_second! > 0 && metrics.train_steps_per_second! > 0);
  const end = state.log_history.at(-1)!;
  assert.equal(end.train_loss, metrics.train_loss, "trainer_state.json closes with HF's summary entry");
  assert.equal(end.step, 6);
  assert.match(r.stderr, /train_runtime: [\d.]+ s \| train_samples_per_second: [\d.]+ \| train_steps_per_second: [\d.]+ \| train_loss: [\d.]+/);
  assert.match(r.stderr, /step 6\/6 \| .* \| ETA 0s/);
  const capped = run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "capped"), "--max-steps", "2", "--batch-size", "2", "--precision", "fp32"]);
  assert.equal(capped.code, 0, capped.stderr);
  assert.match(capped.stderr, /training 2 steps \(--max-steps 2; an epoch is 3 step\(s\)\)/);
});

test("HF Trainer command lines run as pasted: underscores, --flag True|False, --bf16, --do_train/--do_eval, --report_to none, --max_steps -1; --fp16 is refused", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const hf = (extra: string[]): ReturnType<typeof run> => run(["train", "--model_name_or_path", TINY, "--train_file", file, "--validation_file", file, ...extra]);
  const lines: string[][] = [
    ["--output_dir", join(dir, "o1"), "--do_train", "--do_eval", "--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--learning_rate", "2e-5", "--max_seq_length", "32", "--overwrite_output_dir", "--report_to", "none", "--logging_dir", join(dir, "logs"), "--seed", "42"],
    ["--output_dir", join(dir, "o2"), "--evaluation_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "True", "--metric_for_best_model", "eval_accuracy", "--save_total_limit", "1", "--num_train_epochs", "2"],
    ["--output_dir=" + join(dir, "o3"), "--max_steps", "-1", "--num_train_epochs", "1", "--warmup_ratio", "0.1", "--weight_decay", "0.01", "--gradient_accumulation_steps", "2", "--do_train", "True"],
    ["--output_dir", join(dir, "o4"), "--group_by_length", "True", "--eval_strategy", "steps", "--eval_steps", "1", "--logging_steps", "1", "--max_steps", "2", "--per_device_eval_batch_size", "8"],
    ["--output_dir", join(dir, "o5"), "--bf16", "True", "--max_steps", "1", "--load_best_model_at_end=False", "--do_eval", "False"],
  ];
  for (const l of lines) {
    const r = hf(l);
    assert.equal(r.code, 0, `${l.join(" ")}\n${r.stderr}`);
  }
  assert.equal(JSON.parse(readFileSync(join(dir, "o2", "metrics.json"), "utf8")).best.restored, true, "--load_best_model_at_end True took effect");
  assert.equal(JSON.parse(readFileSync(join(dir, "o4", "training_args.json"), "utf8")).group_by_length, true);
  assert.equal(JSON.parse(readFileSync(join(dir, "o5", "training_args.json"), "utf8")).precision, "bf16");
  assert.equal(JSON.parse(readFileSync(join(dir, "o5", "training_args.json"), "utf8")).load_best_model_at_end, false);
  assertOneLineError(hf(["--output_dir", join(dir, "o6"), "--fp16"]), /--fp16: CPUs have no fp16 training here; use --bf16/);
});

test("--adam_beta1, --adam_beta2, --adam_epsilon reach the optimizer (HF's spellings) and are recorded", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const weights = (out: string, extra: string[]): Buffer => {
    const r = train(file, join(dir, out), ["--max-steps", "3", ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return readFileSync(join(dir, out, "model.safetensors"));
  };
  const base = weights("a", []);
  assert.deepEqual(weights("b", ["--adam_beta1", "0.9", "--adam_beta2", "0.999", "--adam_epsilon", "1e-8"]), base, "HF's defaults are ours");
  assert.notDeepEqual(weights("c", ["--adam_beta1", "0.5"]), base);
  assert.notDeepEqual(weights("d", ["--adam_epsilon", "1e-3"]), base);
  const saved = JSON.parse(readFileSync(join(dir, "c", "training_args.json"), "utf8"));
  assert.equal(saved.adam_beta1, 0.5);
  assert.equal(saved.adam_beta2, 0.999);
});

test("fractional --num_train_epochs, --warmup_steps below 1 as a ratio (HF 5), --metric_for_best_model f1 as the task's F1", () => {
  const dir = tempDir();
  const file = join(dir, "train.csv");
  writeFileSync(file, ["text,label", ...ROWS.map(([t, l]) => `${t},${l}`)].join("\n") + "\n");
  const out = join(dir, "out");
  const r = run(["train", "--model", TINY, "--train-file", file, "--validation-file", file, "--output-dir", out, "--per_device_train_batch_size", "2",
    "--num_train_epochs", "1.5", "--warmup_steps", "0.4", "--learning_rate", "1e-3", "--logging_steps", "1", "--metric_for_best_model", "f1",
    "--load_best_model_at_end", "True", "--precision", "fp32"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /training 5 steps \(1\.5 epoch\(s\) × 3\)/, "ceil(1.5 × 3) steps, as HF counts them");
  const logs = stepLogs(JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")).log_history as Record<string, number>[]);
  assert.equal(logs.length, 5);
  // warmup ceil(5 × 0.4) = 2 steps: lr 0, then half the peak, then the peak decaying
  assert.deepEqual(logs.slice(0, 3).map((l) => l.learning_rate), [0, 5e-4, 1e-3]);
  assert.equal(JSON.parse(readFileSync(join(out, "metrics.json"), "utf8")).best.metric, "macro_f1");
  assertOneLineError(run(["train", "--model", TINY, "--train-file", file, "--output-dir", join(dir, "x"), "--warmup-steps", "2.5"]), /--warmup-steps must be a whole number of steps, or a ratio below 1/);
});

test("predict --output writes what its extension says (.jsonl, .csv, .tsv) or refuses it; CSV keeps the pair and every probability in label order; --text with --input is refused", () => {
  const dir = tempDir();
  const input = join(dir, "in.jsonl");
  writeFileSync(input, [JSON.stringify({ text: "好看", text_pair: "剧情\t紧凑" }), JSON.stringify({ text: "难看" })].join("\n") + "\n");
  const out = (name: string): string => {
    const file = join(dir, name);
    const r = run(["predict", "--model", TINY, "--input", input, "--output", file]);
    assert.equal(r.code, 0, r.stderr);
    return readFileSync(file, "utf8");
  };
  const tsv = out("p.tsv").trim().split("\n");
  assert.equal(tsv[0], "text\ttext_pair\tlabel\tscore\tprob_负面\tprob_正面");
  assert.match(tsv[1]!, /^好看\t剧情 紧凑\t(正面|负面)\t0\.\d+\t0\.\d+\t0\.\d+$/, "a tab inside a field becomes a space");
  assert.match(tsv[2]!, /^难看\t\t/);
  const csv = out("p.csv").trim().split("\n");
  assert.equal(csv[0], "text,text_pair,label,score,prob_负面,prob_正面");
  const jsonl = out("p.jsonl").trim().split("\n").map((l) => JSON.parse(l) as { probabilities: Record<string, number> });
  assert.deepEqual(Object.keys(jsonl[0]!.probabilities), ["负面", "正面"], "label order, not sorted by probability");
  assertOneLineError(run(["predict", "--model", TINY, "--input", input, "--output", join(dir, "p.txt")]), /--output .*p\.txt: write \.jsonl, \.csv or \.tsv/);
  assertOneLineError(run(["predict", "--model", TINY, "--input", input, "--text", "好"]), /predict takes --text or --input, not both/);
  // --id-column: the row's id in every output line
  const withIds = join(dir, "ids.csv");
  writeFileSync(withIds, "review_id,text\nr-17,好看\nr-18,难看\n");
  const idOut = join(dir, "ids-out.csv");
  const r = run(["predict", "--model", TINY, "--input", withIds, "--id-column", "review_id", "--output", idOut]);
  assert.equal(r.code, 0, r.stderr);
  const idLines = readFileSync(idOut, "utf8").trim().split("\n");
  assert.equal(idLines[0], "review_id,text,label,score,prob_负面,prob_正面");
  assert.match(idLines[2]!, /^r-18,难看,/);
  const j = run(["predict", "--model", TINY, "--input", withIds, "--id-column", "review_id"]);
  assert.equal(JSON.parse(j.stdout.split("\n")[0]!).review_id, "r-17");
  assertOneLineError(run(["predict", "--model", TINY, "--input", withIds, "--id-column", "rid"]), /ids\.csv:2: no column "rid" \(--id-column\)/);
});

test("an unknown flag is named as typed, with the nearest flag in the same spelling (HF aliases included)", () => {
  const dir = tempDir();
  const args = ["train", "--model", TINY, "--train-file", join(dir, "x.csv"), "--output-dir", join(dir, "o")];
  const a = run([...args, "--num_train_epoch", "1"]);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /unknown option '--num_train_epoch'\n\(Did you mean --num_train_epochs\?\)/);
  const b = run([...args, "--learnin_rate", "1e-3"]);
  assert.match(b.stderr, /unknown option '--learnin_rate'\n\(Did you mean --learning-rate\?\)/);
  const c = run([...args, "--zzz"]);
  assert.match(c.stderr, /unknown option '--zzz'\n$/);
});
