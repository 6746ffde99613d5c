/**
 * PEFT's adapter folder (peft save_pretrained): adapter_config.json and adapter_model.safetensors with PEFT's keys
 * (`base_model.model.<name>`, the adapter name and the modules_to_save wrapper stripped, as
 * get_peft_model_state_dict writes them), plus what weitiao adds beside them: config.json (the task's labels, which
 * a base model folder lacks) and the tokenizer files. PEFT ignores the extra files; `PeftModel.from_pretrained(base,
 * dir)` loads the folder.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { TaskModel } from "../model/task-model.js";
import { configToJson } from "../model/config.js";
import { adapterConfigJson, isSavedModule, parseAdapterConfig, peftKey } from "../model/lora.js";
import { asFloat32 } from "../model/params.js";
import { WeitiaoError } from "../util/errors.js";
import type { Rng } from "../util/rng.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "./safetensors.js";
import { torchSource } from "./torch.js";

export const ADAPTER_CONFIG = "adapter_config.json";

export function isAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG));
}

/** adapter_config.json as LoRA options, with its task type and base model. */
export function readAdapterConfig(dir: string): ReturnType<typeof parseAdapterConfig> {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new WeitiaoError(`${dir}: no ${ADAPTER_CONFIG} (is this a PEFT adapter folder?)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new WeitiaoError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new WeitiaoError(`${path}: not a JSON object`);
  return parseAdapterConfig(raw as Record<string, unknown>, path);
}

/**
 * The base model an adapter names (base_model_name_or_path): a folder as written, else beside the adapter folder,
 * else the name itself (a hub id).
 */
export function adapterBase(dir: string, name: string): string {
  if (isAbsolute(name) || existsSync(name)) return name;
  const beside = resolve(dir, "..", name);
  return existsSync(beside) ? beside : name;
}

/** PEFT's initialisation of the adapter matrices: A kaiming-uniform (a = √5, so U(±1/√in)), B zero. */
export function initLora(model: TaskModel, rng: Rng): void {
  for (const s of model.params.specs) {
    if (s.kind !== "lora") continue;
    const v = model.params.value(s.name);
    if (s.name.endsWith(".lora_B.weight")) v.fill(0);
    else {
      const bound = 1 / Math.sqrt(s.shape[1]!);
      for (let i = 0; i < v.length; i++) v[i] = (rng.next() * 2 - 1) * bound;
    }
  }
}

/** The parameters an adapter folder holds: the adapter matrices and the modules trained whole. */
export function adapterParams(model: TaskModel): string[] {
  const spec = model.lora!;
  return model.params.specs.filter((s) => s.kind === "lora" || isSavedModule(spec, s.name)).map((s) => s.name);
}

/** Read an adapter's tensors into the model (its matrices and the modules_to_save copies); every one must be there. */
export function loadAdapterWeights(model: TaskModel, dir: string): void {
  const st = join(dir, "adapter_model.safetensors");
  const bin = join(dir, "adapter_model.bin");
  const source = existsSync(st) ? SafetensorsFile.open(st) : existsSync(bin) ? null : undefined;
  if (source === undefined) throw new WeitiaoError(`${dir}: no adapter_model.safetensors (or adapter_model.bin)`);
  const torch = source ? null : torchSource(bin);
  const names = source ? source.names() : torch!.names();
  const shape = (n: string): number[] => (source ? source.info(n).shape : torch!.shape(n));
  try {
    const want = new Set(adapterParams(model));
    for (const key of names) {
      const name = key.replace(/^base_model\.model\./, "").replace(/\.default(?=\.weight$|\.bias$)/, "").replace(/\.modules_to_save\.default\./, ".");
      const spec = model.params.byName.get(name);
      if (!spec || !want.has(name)) throw new WeitiaoError(`${dir}: ${key} is not a parameter of this adapter on the base model (targets ${model.lora!.targetModules.join(", ")}; modules_to_save ${model.lora!.modulesToSave.join(", ")})`);
      if (shape(key).join(",") !== spec.shape.join(",")) throw new WeitiaoError(`${dir}: ${key} has shape [${shape(key)}] but the base model needs [${spec.shape}]`);
      if (source) source.floatInto(key, model.params.value(name));
      else model.params.value(name).set(torch!.read(key));
      want.delete(name);
    }
    const lacking = [...want].filter((n) => model.params.spec(n).kind === "lora");
    if (lacking.length) throw new WeitiaoError(`${dir}: the adapter lacks ${lacking.slice(0, 3).join(", ")}${lacking.length > 3 ? ", …" : ""}`);
  } finally {
    source?.close();
    torch?.close();
  }
}

/** Write the adapter folder's files into `dir` (which exists and is ours); returns their names. */
export function writeAdapterFiles(model: TaskModel, dir: string, baseModel: string, extraFiles: Record<string, string> = {}): string[] {
  const tensors = new Map<string, TensorToWrite>();
  for (const name of adapterParams(model)) {
    const v = model.params.value(name);
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) throw new WeitiaoError(`refusing to save the adapter: ${name} holds non-finite values`);
    tensors.set(peftKey(name), { dtype: "F32", shape: model.params.spec(name).shape, data: asFloat32(v) });
  }
  writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify(adapterConfigJson(model.lora!, model.task, baseModel), null, 2) + "\n");
  // The task's labels (a base folder has none); PEFT reads only the two files above
  writeFileSync(join(dir, "config.json"), JSON.stringify(configToJson(model.config, model.task), null, 2) + "\n");
  for (const [name, content] of Object.entries(extraFiles)) writeFileSync(join(dir, name), content);
  return ["adapter_model.safetensors", ADAPTER_CONFIG, "config.json", ...Object.keys(extraFiles)];
}

/** merge_and_unload(): a plain model whose wrapped Linears hold W + s · B·A (the head is already the trained copy). */
export function mergedModel(model: TaskModel): TaskModel {
  const spec = model.lora!;
  const merged = new TaskModel(model.config, model.backend, model.dtype, model.task);
  for (const s of merged.params.specs) merged.params.value(s.name).set(model.params.value(s.name));
  for (const prefix of spec.targets) {
    const w = merged.params.value(`${prefix}.weight`);
    const a = model.params.value(`${prefix}.lora_A.weight`);
    const b = model.params.value(`${prefix}.lora_B.weight`);
    const [outF, inF] = merged.params.spec(`${prefix}.weight`).shape as [number, number];
    for (let o = 0; o < outF; o++) {
      for (let k = 0; k < spec.r; k++) {
        const bk = b[o * spec.r + k]! * spec.scale;
        if (bk === 0) continue;
        for (let i = 0; i < inF; i++) w[o * inF + i]! += bk * a[k * inF + i]!;
      }
    }
  }
  return merged;
}
