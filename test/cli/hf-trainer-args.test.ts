/**
 * More of HF TrainingArguments and run_classification.py's script arguments through the built CLI (issue 18, item 10):
 * --do_predict (predict_results.csv, an unlabelled test file), --save_strategy best, --save_only_model, --eval_on_start,
 * --data_seed, --dataloader_drop_last, --logging_strategy, --logging_first_step, --text_column_names,
 * --label_column_name, --pad_to_max_length; and HF command lines from its text-classification examples, unchanged.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, TINY, stepLogs, tempDir } from "../helpers.js";
import { assertOneLineError, run } from "./cli-helpers.js";

const ROWS: [string, string, number][] = [
  ["这部电影太好看了", "强烈推荐", 1], ["烂片，浪费时间。", "别看", 0], ["演员很棒", "值得", 1], ["剧情无聊", "很闷", 0], ["非常精彩", "推荐", 1],
  ["太差了", "不推荐", 0], ["很感人", "好", 1], ["无聊透顶", "差", 0], ["好看", "棒", 1], ["难看", "烂", 0],
];

function files(dir: string): { train: string; test: string; unlabelled: string; pairs: string } {
  const train = join(dir, "train.csv");
  writeFileSync(train, ["text,label", ...ROWS.map(([t, , l]) => `${t},${l}`)].join("\n") + "\n");
  const test = join(dir, "test.csv");
  writeFileSync(test, ["text,label", ...ROWS.slice(0, 4).map(([t, , l]) => `${t},${l}`)].join("\n") + "\n");
  const unlabelled = join(dir, "unlabelled.jsonl");
  writeFileSync(unlabelled, ["好看极了", "太烂了, 差", "一般"].map((text) => JSON.stringify({ text })).join("\n") + "\n");
  const pairs = join(dir, "pairs.csv");
  writeFileSync(pairs, ["sentence1,sentence2,rating", ...ROWS.map(([a, b, l]) => `${a},${b},${l}`)].join("\n") + "\n");
  return { train, test, unlabelled, pairs };
}

const base = (train: string, out: string): string[] => ["train", "--model_name_or_path", TINY, "--train_file", train, "--output_dir", out, "--learning_rate", "1e-3", "--per_device_train_batch_size", "4", "--dropout", "0"];

test("--do_predict writes predict_results.csv (index, prediction) for a labelled or an unlabelled test file; without a test file it is refused", () => {
  const dir = tempDir();
  const f = files(dir);
  const labelled = run([...base(f.train, join(dir, "a")), "--max_steps", "2", "--test_file", f.test, "--do_predict"]);
  assert.equal(labelled.code, 0, labelled.stderr);
  const lines = readFileSync(join(dir, "a", "predict_results.csv"), "utf8").trim().split("\n");
  assert.equal(lines[0], "index,prediction");
  assert.deepEqual(lines.slice(1).map((l) => l.split(",")[0]), ["0", "1", "2", "3"]);
  for (const l of lines.slice(1)) assert.match(l, /^\d,(负面|正面)$/);
  assert.ok("test_accuracy" in JSON.parse(readFileSync(join(dir, "a", "metrics.json"), "utf8")), "a labelled test file is also scored");
  const unlabelled = run([...base(f.train, join(dir, "b")), "--max_steps", "2", "--test_file", f.unlabelled, "--do_predict", "True"]);
  assert.equal(unlabelled.code, 0, unlabelled.stderr);
  assert.equal(readFileSync(join(dir, "b", "predict_results.csv"), "utf8").trim().split("\n").length, 4);
  assert.equal("test_accuracy" in JSON.parse(readFileSync(join(dir, "b", "metrics.json"), "utf8")), false, "no labels, no test metrics");
  // predictions equal weitiao predict's on the saved model
  const p = run(["predict", "--model", join(dir, "b"), "--input", f.unlabelled]);
  assert.equal(p.code, 0, p.stderr);
  assert.deepEqual(readFileSync(join(dir, "b", "predict_results.csv"), "utf8").trim().split("\n").slice(1).map((l) => l.split(",")[1]), p.stdout.trim().split("\n").map((l) => JSON.parse(l).label));
  assertOneLineError(run([...base(f.train, join(dir, "c")), "--do_predict"]), /--do-predict writes the predictions of --test-file: give one/);
  writeFileSync(join(dir, "half.csv"), "text,label\n好,1\n差,\n");
  assertOneLineError(run([...base(f.train, join(dir, "d")), "--test_file", join(dir, "half.csv"), "--do_predict"]), /half\.csv:3: missing label/);
});

test("--do_predict on NER writes each row's tags (its words' first pieces), space-separated as run_ner", () => {
  const dir = tempDir();
  const data = join(FIXTURES, "ner", "cluener-40.jsonl");
  const r = run(["train", "--model", TINY, "--task", "ner", "--train-file", data, "--test-file", data, "--do-predict", "--max-steps", "2", "--output-dir", join(dir, "n"), "--max-length", "64"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = readFileSync(join(dir, "n", "predict_results.csv"), "utf8").trim().split("\n");
  assert.equal(lines.length, 41);
  const first = JSON.parse(readFileSync(data, "utf8").split("\n")[0]!) as { text: string };
  assert.equal(lines[1]!.split(",")[1]!.split(" ").length, [...first.text].length, "a tag per character");
});

test("--save_strategy best checkpoints only improvements; --save_only_model leaves out the optimizer (resume refused clearly)", () => {
  const dir = tempDir();
  const f = files(dir);
  const r = run([...base(f.train, join(dir, "best")), "--validation_file", f.train, "--num_train_epochs", "4", "--save_strategy", "best", "--metric_for_best_model", "loss", "--save_only_model", "True"]);
  assert.equal(r.code, 0, r.stderr);
  const state = JSON.parse(readFileSync(join(dir, "best", "trainer_state.json"), "utf8")) as { log_history: { step: number; eval_loss?: number }[] };
  const evals = state.log_history.filter((e) => e.eval_loss !== undefined);
  // the steps whose evaluation set a new lowest loss, before the last step (the final model is the output itself)
  let bestSoFar = Infinity;
  const improved = evals.filter((e) => (e.eval_loss! < bestSoFar ? ((bestSoFar = e.eval_loss!), true) : false)).map((e) => e.step).filter((s) => s < 12);
  const saved = readdirSync(join(dir, "best")).filter((n) => n.startsWith("checkpoint-")).map((n) => Number(n.slice(11))).sort((a, b) => a - b);
  assert.deepEqual(saved, improved);
  assert.ok(saved.length > 0);
  assert.equal(existsSync(join(dir, "best", `checkpoint-${saved[0]}`, "optimizer.safetensors")), false, "--save_only_model");
  assertOneLineError(run([...base(f.train, join(dir, "best")), "--validation_file", f.train, "--num_train_epochs", "4", "--resume_from_checkpoint", join(dir, "best", `checkpoint-${saved[0]}`)]),
    /saved with --save-only-model holds no optimizer state, so training cannot resume from it/);
  assertOneLineError(run([...base(f.train, join(dir, "x")), "--save_strategy", "best"]), /--save-strategy best .* needs validation data/);
});

test("--eval_on_start, --logging_first_step, --logging_strategy epoch|no, --dataloader_drop_last, --data_seed", () => {
  const dir = tempDir();
  const f = files(dir);
  const history = (out: string) => (JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")) as { log_history: Record<string, number>[] }).log_history;
  const a = run([...base(f.train, join(dir, "a")), "--validation_file", f.train, "--num_train_epochs", "2", "--eval_on_start", "--logging_first_step", "--logging_steps", "50"]);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /eval at start: eval_loss [\d.]+/);
  const h = history(join(dir, "a"));
  assert.equal(h[0]!.step, 0);
  assert.ok("eval_loss" in h[0]!);
  assert.deepEqual(stepLogs(h).map((l) => l.step), [1], "only the first step logged (--logging_steps 50)");
  const epoch = run([...base(f.train, join(dir, "e")), "--num_train_epochs", "2", "--logging_strategy", "epoch"]);
  assert.equal(epoch.code, 0, epoch.stderr);
  assert.deepEqual(stepLogs(history(join(dir, "e"))).map((l) => l.step), [3, 6], "one entry per epoch (3 steps each)");
  const none = run([...base(f.train, join(dir, "n")), "--num_train_epochs", "1", "--logging_strategy", "no", "--logging_steps", "1"]);
  assert.equal(none.code, 0, none.stderr);
  assert.deepEqual(stepLogs(history(join(dir, "n"))), []);
  // 10 rows at batch 4: 3 batches an epoch, 2 with the incomplete one dropped
  const drop = run([...base(f.train, join(dir, "d")), "--num_train_epochs", "2", "--dataloader_drop_last", "True"]);
  assert.equal(drop.code, 0, drop.stderr);
  assert.match(drop.stderr, /training 4 steps \(2 epoch\(s\) × 2\)/);
  // --data_seed changes the data order alone: same seed for weights and dropout, another order, other weights
  const s1 = run([...base(f.train, join(dir, "s1")), "--max_steps", "3", "--seed", "1"]);
  const s2 = run([...base(f.train, join(dir, "s2")), "--max_steps", "3", "--seed", "1", "--data_seed", "9"]);
  const s3 = run([...base(f.train, join(dir, "s3")), "--max_steps", "3", "--seed", "1", "--data_seed", "1"]);
  for (const r of [s1, s2, s3]) assert.equal(r.code, 0, r.stderr);
  const w = (d: string): Buffer => readFileSync(join(dir, d, "model.safetensors"));
  assert.ok(w("s1").equals(w("s3")), "--data_seed equal to --seed: the same run");
  assert.ok(!w("s1").equals(w("s2")), "another data order");
});

test("run_classification.py's arguments as pasted: --text_column_names a,b, --label_column_name, --pad_to_max_length, --max_seq_length", () => {
  const dir = tempDir();
  const f = files(dir);
  const r = run(["train", "--model_name_or_path", TINY, "--train_file", f.pairs, "--validation_file", f.pairs, "--text_column_names", "sentence1,sentence2",
    "--label_column_name", "rating", "--pad_to_max_length", "True", "--max_seq_length", "32", "--do_train", "--do_eval", "--output_dir", join(dir, "o"),
    "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--overwrite_output_dir"]);
  assert.equal(r.code, 0, r.stderr);
  const args = JSON.parse(readFileSync(join(dir, "o", "training_args.json"), "utf8")) as Record<string, unknown>;
  assert.equal(args.text_column, "sentence1");
  assert.equal(args.text_pair_column, "sentence2");
  assert.equal(args.label_column_name, "rating");
  assert.equal(args.max_seq_length, 32);
  assertOneLineError(run(["train", "--model", TINY, "--train-file", f.pairs, "--output-dir", join(dir, "x"), "--text_column_names", "a,b,c"]), /--text_column_names takes one or two column names/);
});

test("the output folder has HF's model card (README.md) and trainer_state.json's best_model_checkpoint is the checkpoint path or null", () => {
  const dir = tempDir();
  const f = files(dir);
  const out = join(dir, "card");
  const r = run([...base(f.train, out), "--validation_file", f.train, "--num_train_epochs", "2", "--save_strategy", "epoch", "--gradient_accumulation_steps", "2", "--warmup_ratio", "0.1"]);
  assert.equal(r.code, 0, r.stderr);
  const card = readFileSync(join(out, "README.md"), "utf8");
  assert.match(card, /^---\nlibrary_name: transformers\nbase_model: ".*bert-tiny-chinese"\ntags:\n- generated_from_trainer\n/);
  assert.match(card, /metrics:\n- accuracy\n/);
  assert.match(card, /This model is a fine-tuned version of `.*bert-tiny-chinese` on `train\.csv` \(evaluated on `train\.csv`\), for text-classification\./);
  assert.match(card, /It achieves the following results on the evaluation set:\n- Loss: [\d.]+\n- Accuracy: [\d.]+/);
  for (const h of ["- learning_rate: 0.001", "- train_batch_size: 4", "- gradient_accumulation_steps: 2", "- total_train_batch_size: 8", "- lr_scheduler_type: linear", "- lr_scheduler_warmup_ratio: 0.1", "- num_epochs: 2"]) {
    assert.ok(card.includes(h), h);
  }
  assert.match(card, /\| Training Loss \| Epoch \| Step \| Validation Loss \| Accuracy \| Macro Precision/);
  assert.equal(card.split("\n").filter((l) => /^\| (No log|[\d.]+) \| \d/.test(l)).length, 2, "one row per evaluation");
  assert.match(card, /Labels: 负面, 正面/);
  assert.match(card, /- weitiao \d+\.\d+\.\d+\n- Node\.js /);
  const state = JSON.parse(readFileSync(join(out, "trainer_state.json"), "utf8")) as { best_model_checkpoint: string | null; best_global_step: number; global_step: number };
  // the best evaluation is epoch 1's (its checkpoint) or the last one's (no checkpoint there: the output folder itself)
  assert.equal(state.best_model_checkpoint, state.best_global_step === state.global_step ? out : join(out, `checkpoint-${state.best_global_step}`));
  assert.ok(existsSync(state.best_model_checkpoint!));
  const plain = run([...base(f.train, join(dir, "plain")), "--max_steps", "1"]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(readFileSync(join(dir, "plain", "README.md"), "utf8"), /No evaluation during training\./);
});

test("--config takes an HF TrainingArguments JSON/YAML as written: unimplemented HF keys in one notice, unknown keys an error naming the file", () => {
  const dir = tempDir();
  const f = files(dir);
  const hf = {
    model_name_or_path: TINY, train_file: f.train, validation_file: f.train, output_dir: join(dir, "o"), overwrite_output_dir: true, do_train: true, do_eval: true,
    num_train_epochs: 1, max_steps: -1, per_device_train_batch_size: 4, learning_rate: 1e-3, weight_decay: 0.01, warmup_ratio: 0.1, fp16: false, bf16: false,
    eval_strategy: "epoch", save_strategy: "no", report_to: "none", logging_dir: join(dir, "logs"), push_to_hub: false, dataloader_num_workers: 2, run_name: "tnews", max_seq_length: 32,
  };
  writeFileSync(join(dir, "args.json"), JSON.stringify(hf));
  const r = run(["train", "--config", join(dir, "args.json")]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /notice: .*args\.json: HF arguments weitiao does not implement, ignored: push_to_hub, dataloader_num_workers, run_name/);
  const args = JSON.parse(readFileSync(join(dir, "o", "training_args.json"), "utf8")) as Record<string, unknown>;
  assert.equal(args.learning_rate, 1e-3);
  assert.equal(args.max_seq_length, 32);
  assert.equal(args.weight_decay, 0.01);
  writeFileSync(join(dir, "args.yaml"), `model_name_or_path: ${TINY}\ntrain_file: ${f.train}\noutput_dir: ${join(dir, "y")}\nmax_steps: 1\ngradient_checkpointing: false\nseed: 3\n`);
  const y = run(["train", "--config", join(dir, "args.yaml")]);
  assert.equal(y.code, 0, y.stderr);
  assert.match(y.stderr, /ignored: gradient_checkpointing/);
  // dict and list values as HF writes them; run_mlm's validation_split_percentage as a fraction
  writeFileSync(join(dir, "kw.json"), JSON.stringify({ model_name_or_path: TINY, train_file: f.train, output_dir: join(dir, "kw"), max_steps: 4, logging_steps: 1,
    lr_scheduler_type: "cosine_with_restarts", lr_scheduler_kwargs: { num_cycles: 2 }, report_to: ["tensorboard"], validation_split_percentage: 20 }));
  const kw = run(["train", "--config", join(dir, "kw.json")]);
  assert.equal(kw.code, 0, kw.stderr);
  const kwArgs = JSON.parse(readFileSync(join(dir, "kw", "training_args.json"), "utf8")) as Record<string, unknown>;
  assert.equal(kwArgs.lr_scheduler_kwargs, '{"num_cycles":2}');
  assert.equal(kwArgs.report_to, "tensorboard");
  assert.equal(kwArgs.validation_split, 0.2);
  assert.match(kw.stderr, /validation: 2 rows held out/);
  writeFileSync(join(dir, "typo.json"), JSON.stringify({ learnin_rate: 1e-3 }));
  assertOneLineError(run(["train", "--config", join(dir, "typo.json"), "--model", TINY]), /typo\.json: unknown key "learnin_rate": neither a weitiao train option nor an HF TrainingArguments field \(did you mean learning-rate\?\)/);
});

test("ten command lines from HF's text-classification examples (run_classification.py, run_glue.py, the Trainer docs) run unchanged on local files", () => {
  const dir = tempDir();
  const f = files(dir);
  const m = ["--model_name_or_path", TINY];
  const lines: string[][] = [
    // run_classification.py README (dataset flags swapped for local files)
    [...m, "--train_file", f.train, "--validation_file", f.train, "--shuffle_train_dataset", "--metric_name", "accuracy", "--text_column_names", "text", "--label_column_name", "label",
      "--do_train", "--do_eval", "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--learning_rate", "2e-5", "--num_train_epochs", "1", "--output_dir", join(dir, "l1")],
    [...m, "--train_file", f.pairs, "--validation_file", f.pairs, "--text_column_names", "sentence1,sentence2", "--label_column_name", "rating", "--do_train", "--do_eval",
      "--max_seq_length", "32", "--per_device_train_batch_size", "4", "--learning_rate", "2e-5", "--num_train_epochs", "1", "--output_dir", join(dir, "l2"), "--overwrite_output_dir"],
    // run_glue.py README
    [...m, "--train_file", f.train, "--validation_file", f.train, "--do_train", "--do_eval", "--max_seq_length", "32", "--per_device_train_batch_size", "4",
      "--learning_rate", "2e-5", "--num_train_epochs", "1", "--output_dir", join(dir, "l3"), "--pad_to_max_length", "True", "--seed", "42"],
    [...m, "--train_file", f.train, "--test_file", f.unlabelled, "--do_train", "--do_predict", "--max_seq_length", "32", "--output_dir", join(dir, "l4"), "--num_train_epochs", "1"],
    // Trainer docs / TrainingArguments spellings
    [...m, "--train_file", f.train, "--validation_file", f.train, "--output_dir", join(dir, "l5"), "--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end",
      "--metric_for_best_model", "accuracy", "--greater_is_better", "True", "--num_train_epochs", "2", "--save_total_limit", "1", "--report_to", "none"],
    [...m, "--train_file", f.train, "--output_dir", join(dir, "l6"), "--lr_scheduler_type", "cosine", "--warmup_ratio", "0.1", "--weight_decay", "0.01", "--max_steps", "3",
      "--logging_steps", "1", "--logging_first_step", "True", "--gradient_accumulation_steps", "2", "--dataloader_num_workers", "2"],
    [...m, "--train_file", f.train, "--validation_file", f.train, "--output_dir", join(dir, "l7"), "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
      "--max_steps", "4", "--metric_for_best_model", "loss", "--greater_is_better", "False", "--load_best_model_at_end", "True", "--push_to_hub", "False"],
    [...m, "--train_file", f.train, "--output_dir", join(dir, "l8"), "--optim", "adafactor", "--learning_rate", "1e-3", "--max_steps", "2", "--bf16", "False", "--fp16", "False"],
    [...m, "--train_file", f.train, "--output_dir", join(dir, "l9"), "--num_train_epochs", "1.5", "--per_device_train_batch_size", "4", "--label_smoothing_factor", "0.1",
      "--data_seed", "3", "--group_by_length", "--run_name", "tnews-bert"],
    [...m, "--train_file", f.train, "--validation_file", f.train, "--output_dir", join(dir, "l10"), "--evaluation_strategy", "epoch", "--num_train_epochs", "1",
      "--report_to", "tensorboard", "--logging_dir", join(dir, "tb"), "--max_seq_length", "32", "--disable_tqdm", "True"],
  ];
  assert.equal(lines.length, 10);
  for (const l of lines) {
    const r = run(["train", ...l]);
    assert.equal(r.code, 0, `${l.join(" ")}\n${r.stderr}`);
  }
  assert.match(run(["train", ...lines[0]!.map((a) => a.replace("l1", "l1b"))]).stderr, /notice: HF arguments weitiao does not implement, ignored: --shuffle_train_dataset, --metric_name/);
  assert.ok(readFileSync(join(dir, "l4", "predict_results.csv"), "utf8").startsWith("index,prediction\n"));
  // --greater_is_better False made the loss's smallest value the best, and load_best_model_at_end restored it
  const state = JSON.parse(readFileSync(join(dir, "l7", "trainer_state.json"), "utf8")) as { best_metric: number; log_history: { eval_loss?: number }[] };
  assert.equal(state.best_metric, Math.min(...state.log_history.flatMap((e) => (e.eval_loss === undefined ? [] : [e.eval_loss]))));
  assert.equal(readdirSync(join(dir, "tb")).length, 1);
});

test("--greater_is_better False turns 'larger is better' off for accuracy (the best model is the least accurate one)", () => {
  const dir = tempDir();
  const f = files(dir);
  const r = run([...base(f.train, join(dir, "g")), "--validation_file", f.train, "--num_train_epochs", "3", "--metric_for_best_model", "accuracy", "--greater_is_better", "False"]);
  assert.equal(r.code, 0, r.stderr);
  const state = JSON.parse(readFileSync(join(dir, "g", "trainer_state.json"), "utf8")) as { best_metric: number; log_history: { eval_accuracy?: number }[] };
  assert.equal(state.best_metric, Math.min(...state.log_history.flatMap((e) => (e.eval_accuracy === undefined ? [] : [e.eval_accuracy]))));
  assert.equal(JSON.parse(readFileSync(join(dir, "g", "training_args.json"), "utf8")).greater_is_better, false);
});
