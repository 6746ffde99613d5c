/**
 * LoRA adapters as HF PEFT defines them (peft/tuners/lora): a wrapped Linear computes
 * `W x + b + s · B(A(dropout(x)))` with s = alpha/r (alpha/√r with rslora), A [r, in] and B [out, r]; the base is
 * frozen, and the task head (PEFT's modules_to_save for the task type) trains whole. This file resolves which
 * modules are wrapped and reads and writes PEFT's adapter folder (adapter_config.json, adapter_model.safetensors);
 * the forward and backward of a wrapped Linear live in pass.ts beside the plain Linear's.
 */
import type { Task } from "./task.js";
import type { LayoutEntry } from "./params.js";
import { WeitiaoError } from "../util/errors.js";

/** What a user (or an adapter_config.json) asks for. */
export interface LoraOptions {
  r: number;
  alpha: number;
  dropout: number;
  /** Module names matched as PEFT matches them (a full name, or its last components), or "all-linear"; null: PEFT's default for the family. */
  targetModules: string[] | "all-linear" | null;
  useRslora: boolean;
  /** Extra modules trained whole (beside the task's head). */
  modulesToSave: string[];
}

export const LORA_DEFAULTS: LoraOptions = { r: 8, alpha: 8, dropout: 0, targetModules: null, useRslora: false, modulesToSave: [] };

/** LoRA resolved on one model: the wrapped Linears (their full prefixes) and the parameters trained whole. */
export interface LoraSpec {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  /** alpha/r, or alpha/√r with rslora. */
  scale: number;
  /** As written in adapter_config.json's target_modules. */
  targetModules: string[];
  /** Full prefixes of the wrapped Linears. */
  targets: string[];
  /** PEFT's modules_to_save (the user's, then the task's). */
  modulesToSave: string[];
  /** The base model's name or folder, as adapter_config.json's base_model_name_or_path holds it. */
  baseModel: string;
}

/** peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, for the families weitiao reads. */
export const PEFT_DEFAULT_TARGETS: Record<string, string[]> = {
  bert: ["query", "value"],
  roberta: ["query", "value"],
  "xlm-roberta": ["query", "value"],
  electra: ["query", "value"],
};

/** PEFT's task types, and the modules_to_save each appends (PeftModelFor… classes). */
export const PEFT_TASK_TYPES: Record<Task, { taskType: string | null; modulesToSave: string[] }> = {
  "text-classification": { taskType: "SEQ_CLS", modulesToSave: ["classifier", "score"] },
  "token-classification": { taskType: "TOKEN_CLS", modulesToSave: ["classifier"] },
  "question-answering": { taskType: "QUESTION_ANS", modulesToSave: ["qa_outputs"] },
  // PEFT has no masked-LM task type (a plain PeftModel saves nothing beside the adapter)
  "fill-mask": { taskType: null, modulesToSave: [] },
};

/** PEFT's module matching: the full name, or a suffix of whole components. */
export function matchesModule(name: string, target: string): boolean {
  return name === target || name.endsWith(`.${target}`);
}

/** Linear module prefixes of a layout, in order. */
function linearModules(layout: LayoutEntry[]): string[] {
  return layout.filter((e) => e.kind === "linear" && e.name.endsWith(".weight")).map((e) => e.name.slice(0, -".weight".length));
}

/**
 * The wrapped Linears and the head trained whole. `headModules` are the head's Linear prefixes: "all-linear" wraps
 * every other Linear (PEFT also leaves a classification head out of all-linear; it trains whole as modules_to_save).
 */
export function resolveLora(modelType: string, task: Task, layout: LayoutEntry[], headModules: string[], o: LoraOptions): Omit<LoraSpec, "baseModel"> {
  if (!Number.isInteger(o.r) || o.r < 1) throw new WeitiaoError(`--lora-r must be a positive integer, got ${o.r}`);
  if (!(o.alpha > 0)) throw new WeitiaoError(`--lora-alpha must be positive, got ${o.alpha}`);
  if (!(o.dropout >= 0 && o.dropout < 1)) throw new WeitiaoError(`--lora-dropout must be in [0, 1), got ${o.dropout}`);
  const linears = linearModules(layout);
  const encoderLinears = linears.filter((m) => !headModules.some((h) => m === h || m.startsWith(`${h}.`)));
  const shortNames = [...new Set(encoderLinears.map((m) => m.split(".").at(-1)!))];
  let targetModules: string[];
  let targets: string[];
  if (o.targetModules === "all-linear") {
    targetModules = encoderLinears;
    targets = encoderLinears;
  } else {
    const asked = o.targetModules ?? PEFT_DEFAULT_TARGETS[modelType];
    if (!asked) {
      throw new WeitiaoError(`PEFT has no default LoRA target modules for model_type ${modelType}: give --lora-target-modules (its linear modules: ${shortNames.join(", ")}; or all-linear)`);
    }
    for (const t of asked) {
      if (!linears.some((m) => matchesModule(m, t))) throw new WeitiaoError(`--lora-target-modules ${t} matches no linear module of this ${modelType} model (its linear modules: ${shortNames.join(", ")})`);
    }
    targetModules = asked;
    targets = linears.filter((m) => asked.some((t) => matchesModule(m, t)));
  }
  const modulesToSave = [...new Set([...o.modulesToSave, ...PEFT_TASK_TYPES[task].modulesToSave])];
  const overlap = targets.find((m) => modulesToSave.some((s) => matchesModule(m, s) || m.startsWith(`${s}.`)));
  if (overlap) throw new WeitiaoError(`${overlap} is both a LoRA target and trained whole (modules_to_save): leave it out of --lora-target-modules`);
  return {
    r: o.r, alpha: o.alpha, dropout: o.dropout, useRslora: o.useRslora,
    scale: o.useRslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r,
    targetModules, targets, modulesToSave,
  };
}

/** Does parameter `name` belong to a module trained whole (modules_to_save, matched as PEFT matches modules)? */
export function isSavedModule(spec: LoraSpec, name: string): boolean {
  const module = name.slice(0, name.lastIndexOf("."));
  return spec.modulesToSave.some((s) => {
    const parts = module.split(".");
    // the parameter's module, or any module above it, matches
    return parts.some((_, i) => matchesModule(parts.slice(0, i + 1).join("."), s));
  });
}

/** The layout entries of the adapter matrices, after each wrapped Linear's own. */
export function loraLayout(layout: LayoutEntry[], spec: LoraSpec): LayoutEntry[] {
  const out: LayoutEntry[] = [];
  for (const e of layout) {
    out.push(e);
    const prefix = e.name.slice(0, -".weight".length);
    if (e.kind !== "linear" || !e.name.endsWith(".weight") || !spec.targets.includes(prefix)) continue;
    const [outF, inF] = e.shape as [number, number];
    out.push({ name: `${prefix}.lora_A.weight`, shape: [spec.r, inF], level: e.level, kind: "lora" });
    out.push({ name: `${prefix}.lora_B.weight`, shape: [outF, spec.r], level: e.level, kind: "lora" });
  }
  return out;
}

/** PEFT's key for a parameter in adapter_model.safetensors (get_peft_model_state_dict: adapter name and the modules_to_save wrapper stripped). */
export const peftKey = (name: string): string => `base_model.model.${name}`;

/** adapter_config.json as peft 0.20 writes it for a LoraConfig (every field, sorted keys). */
export function adapterConfigJson(spec: Omit<LoraSpec, "baseModel">, task: Task, baseModel: string): Record<string, unknown> {
  return {
    alora_invocation_tokens: null, alpha_pattern: {}, arrow_config: null, auto_mapping: null, base_model_name_or_path: baseModel,
    bias: "none", corda_config: null, ensure_weight_tying: false, eva_config: null, exclude_modules: null, fan_in_fan_out: false,
    inference_mode: true, init_lora_weights: true, layer_replication: null, layers_pattern: null, layers_to_transform: null,
    loftq_config: {}, lora_alpha: spec.alpha, lora_bias: false, lora_dropout: spec.dropout, lora_ga_config: null, megatron_config: null,
    megatron_core: "megatron.core", modules_to_save: spec.modulesToSave, monteclora_config: null, peft_type: "LORA", peft_version: "0.20.0",
    qalora_group_size: 16, r: spec.r, rank_pattern: {}, revision: null, target_modules: spec.targetModules, target_parameters: null,
    task_type: PEFT_TASK_TYPES[task].taskType, trainable_token_indices: null, use_bdlora: null, use_dora: false, use_qalora: false,
    use_rslora: spec.useRslora, velora_config: null,
  };
}

/**
 * An adapter_config.json read back as options; what weitiao does not implement (DoRA, trained biases, per-module
 * ranks, …) is refused naming the field, rather than silently computing something else.
 */
export function parseAdapterConfig(raw: Record<string, unknown>, where: string): LoraOptions & { taskType: string | null; baseModel: string | null } {
  if (raw.peft_type !== "LORA") throw new WeitiaoError(`${where}: peft_type ${JSON.stringify(raw.peft_type)}: weitiao reads LoRA adapters only`);
  const unsupported: [string, boolean][] = [
    ["use_dora", raw.use_dora === true],
    ["bias", raw.bias !== undefined && raw.bias !== "none"],
    ["lora_bias", raw.lora_bias === true],
    ["fan_in_fan_out", raw.fan_in_fan_out === true],
    ["rank_pattern", !!raw.rank_pattern && Object.keys(raw.rank_pattern as object).length > 0],
    ["alpha_pattern", !!raw.alpha_pattern && Object.keys(raw.alpha_pattern as object).length > 0],
    ["layers_to_transform", raw.layers_to_transform != null],
    ["exclude_modules", raw.exclude_modules != null && !(Array.isArray(raw.exclude_modules) && raw.exclude_modules.length === 0)],
    ["target_parameters", raw.target_parameters != null],
    ["trainable_token_indices", raw.trainable_token_indices != null],
  ];
  const bad = unsupported.find(([, b]) => b);
  if (bad) throw new WeitiaoError(`${where}: ${bad[0]} ${JSON.stringify(raw[bad[0]])} is a PEFT feature weitiao does not implement`);
  const num = (k: string): number => {
    const v = raw[k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new WeitiaoError(`${where}: ${k} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const t = raw.target_modules;
  let targetModules: LoraOptions["targetModules"];
  if (typeof t === "string") {
    if (t.toLowerCase() !== "all-linear") throw new WeitiaoError(`${where}: target_modules as a regular expression (${JSON.stringify(t)}) is not read; list the modules`);
    targetModules = "all-linear";
  } else if (Array.isArray(t) && t.every((x) => typeof x === "string")) {
    targetModules = t as string[];
  } else throw new WeitiaoError(`${where}: target_modules must be a list of module names`);
  const m = raw.modules_to_save;
  if (m != null && !(Array.isArray(m) && m.every((x) => typeof x === "string"))) throw new WeitiaoError(`${where}: modules_to_save must be a list of module names`);
  return {
    r: num("r"), alpha: num("lora_alpha"), dropout: raw.lora_dropout === undefined ? 0 : num("lora_dropout"), targetModules,
    useRslora: raw.use_rslora === true, modulesToSave: (m as string[] | null) ?? [],
    taskType: typeof raw.task_type === "string" ? raw.task_type : null,
    baseModel: typeof raw.base_model_name_or_path === "string" ? raw.base_model_name_or_path : null,
  };
}
