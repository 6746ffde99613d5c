/**
 * Training checkpoints: checkpoint-N/ holds the model (as a loadable HF folder, or with LoRA the PEFT adapter folder), the optimizer state, and the
 * loop state (position in the data order, generator state, running sums, log history), so a resumed run ends
 * with the same weights, bit for bit, as an uninterrupted one. Each checkpoint is written to a temporary folder
 * and renamed into place: an interruption never leaves a half-written checkpoint-N/.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { TaskModel } from "../model/task-model.js";
import { asFloat32 } from "../model/params.js";
import type { AdamW } from "../train/optimizer.js";
import type { LoopState } from "../train/trainer.js";
import { WeitiaoError } from "../util/errors.js";
import { assertFinite, writeModelFiles } from "./checkpoint.js";
import { loadAdapterWeights } from "./adapter.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "./safetensors.js";

const STATE_FILE = "weitiao_state.json";

export function checkpointDirs(outputDir: string): { step: number; dir: string }[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), dir: join(outputDir, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

export interface SaveCheckpointOptions {
  outputDir: string;
  tokenizerDir: string;
  /** trainer_state.json and training_args.json contents. */
  files: Record<string, string>;
  /** Keep at most this many checkpoints (oldest deleted first); 0 keeps all. */
  totalLimit: number;
  /** --save-only-model: the model without the optimizer state. */
  onlyModel?: boolean;
}

export function saveCheckpoint(model: TaskModel, optimizer: AdamW, state: LoopState, o: SaveCheckpointOptions): string {
  const final = join(o.outputDir, `checkpoint-${state.step}`);
  const tmp = `${final}.tmp-${process.pid}`;
  assertFinite(model, `refusing to save checkpoint-${state.step} (the update of step ${state.step} overflowed: lower --learning-rate)`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeModelFiles(model, tmp, o.tokenizerDir, { ...o.files, [STATE_FILE]: JSON.stringify(state) + "\n" });
    // The moments of the parameters that can train (with LoRA: the adapter and the head, never the frozen base);
    // --save-only-model leaves them out, as HF's save_only_model
    if (!o.onlyModel) {
      const size = optimizer.m.length;
      const tensors = new Map<string, TensorToWrite>([
        ["exp_avg", { dtype: "F32", shape: [size], data: asFloat32(optimizer.m) }],
        ["exp_avg_sq", { dtype: "F32", shape: [size], data: asFloat32(optimizer.v) }],
        ["step", { dtype: "I32", shape: [optimizer.steps.length], data: optimizer.steps }],
      ]);
      if (optimizer.u) tensors.set("grad_avg", { dtype: "F32", shape: [size], data: asFloat32(optimizer.u) });
      writeSafetensors(join(tmp, "optimizer.safetensors"), tensors, { format: "weitiao-adamw", params: optimizer.names.join(","), optim: optimizer.opts.optim ?? "adamw_torch" });
    }
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (o.totalLimit > 0) {
    const all = checkpointDirs(o.outputDir);
    for (const c of all.slice(0, Math.max(0, all.length - o.totalLimit))) rmSync(c.dir, { recursive: true, force: true });
  }
  return final;
}

/** Resolve --resume-from-checkpoint: a folder, or "latest" (the highest checkpoint-N in the output folder). */
export function resolveCheckpoint(spec: string, outputDir: string): string {
  if (spec === "latest") {
    const all = checkpointDirs(outputDir);
    if (all.length === 0) throw new WeitiaoError(`${outputDir}: no checkpoint-N folder to resume from`);
    return all[all.length - 1]!.dir;
  }
  if (!existsSync(join(spec, STATE_FILE))) throw new WeitiaoError(`${spec}: not a weitiao checkpoint (no ${STATE_FILE})`);
  return spec;
}

/** Restore weights and optimizer state into `model`/`optimizer`; returns the loop state to continue from. */
/** weitiao_state.json, checked field by field: a corrupt or hand-edited one is an error naming the field. */
function readLoopState(dir: string): LoopState {
  const path = join(dir, STATE_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new WeitiaoError(`${path}: not valid JSON (${(e as Error).message}): the checkpoint is corrupt`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new WeitiaoError(`${path}: not a JSON object: the checkpoint is corrupt`);
  const st = raw as Record<string, unknown>;
  const bad = (field: string, what: string): never => {
    throw new WeitiaoError(`${path}: field ${field} ${st[field] === undefined ? "is missing" : "is not " + what}: the checkpoint is corrupt`);
  };
  for (const k of ["step", "stepInEpoch", "stepsSinceLog", "epochSteps", "correct", "seen"]) {
    if (!Number.isSafeInteger(st[k]) || (st[k] as number) < 0) bad(k, "a non-negative integer");
  }
  if (!Number.isSafeInteger(st.epoch) || (st.epoch as number) < 1) bad("epoch", "a positive integer");
  if (!Number.isSafeInteger(st.epochRngState)) bad("epochRngState", "an integer");
  for (const k of ["lossSinceLog", "epochLoss", "epochSeconds"]) if (typeof st[k] !== "number" || !Number.isFinite(st[k])) bad(k, "a finite number");
  if (st.runLoss !== undefined && (typeof st.runLoss !== "number" || !Number.isFinite(st.runLoss))) bad("runLoss", "a finite number");
  for (const k of ["history", "epochs"]) if (!Array.isArray(st[k])) bad(k, "a list");
  if (st.best !== undefined) {
    const b = st.best as Record<string, unknown> | null;
    if (!b || typeof b.metric !== "number" || !Number.isSafeInteger(b.step) || !Number.isSafeInteger(b.sinceImproved)) bad("best", "{metric, step, sinceImproved}");
  }
  return raw as LoopState;
}

export function loadCheckpoint(dir: string, model: TaskModel, optimizer: AdamW): LoopState {
  const state = readLoopState(dir);
  if (!existsSync(join(dir, "optimizer.safetensors"))) {
    throw new WeitiaoError(`${dir}: a checkpoint saved with --save-only-model holds no optimizer state, so training cannot resume from it (as in HF); start a new run from it with --model ${dir}`);
  }
  // Tensors are read straight into the model's and the optimizer's buffers (no intermediate copies). A LoRA
  // checkpoint holds the adapter alone: the frozen base is the one the run loaded.
  if (model.lora) loadAdapterWeights(model, dir);
  const weights = model.lora ? null : SafetensorsFile.open(join(dir, "model.safetensors"));
  if (weights) try {
    for (const spec of model.params.specs) {
      const t = weights.header.tensors.get(spec.name);
      if (!t || t.shape.reduce((a, b) => a * b, 1) !== spec.size) throw new WeitiaoError(`${dir}: checkpoint does not match the model (${spec.name})`);
      weights.floatInto(spec.name, model.params.value(spec.name));
    }
  } finally {
    weights.close();
  }
  const opt = SafetensorsFile.open(join(dir, "optimizer.safetensors"));
  try {
    if (opt.header.metadata.params !== optimizer.names.join(",")) {
      throw new WeitiaoError(`${dir}: optimizer state was saved for different parameters`);
    }
    const saved = opt.header.metadata.optim ?? "adamw_torch";
    const ours = optimizer.opts.optim ?? "adamw_torch";
    if (saved.replace("_fused", "") !== ours.replace("_fused", "")) throw new WeitiaoError(`${dir}: the checkpoint's optimizer state is ${saved}'s, not ${ours}'s: resume with --optim ${saved}`);
    opt.floatInto("exp_avg", optimizer.m);
    opt.floatInto("exp_avg_sq", optimizer.v);
    if (optimizer.u) opt.floatInto("grad_avg", optimizer.u);
    optimizer.steps.set(opt.int("step"));
  } finally {
    opt.close();
  }
  return state;
}

