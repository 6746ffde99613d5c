/**
 * Turn --model (and --model-config) into a local folder plus, optionally, a separate weights file: a model
 * folder, the bundled demo model, or a bare weights file such as the tutorial's bert_finetuned.pth whose
 * config.json and tokenizer come from --model-config.
 */
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { WeitiaoError } from "../util/errors.js";

/** The tiny demo model shipped in the package (random weights, bert-base-chinese vocabulary). */
export const DEMO_MODEL_DIR = fileURLToPath(new URL("../../../demo/model/", import.meta.url));
export const DEMO_DATA_DIR = fileURLToPath(new URL("../../../demo/data/", import.meta.url));

export interface ModelLocation {
  /** Folder with config.json and the tokenizer files. */
  dir: string;
  /** Weights to load instead of the folder's own. */
  weightsFile?: string;
}

export function locateModel(model: string, modelConfig?: string): ModelLocation {
  if (model === "demo") return { dir: DEMO_MODEL_DIR };
  if (!existsSync(model)) {
    throw new WeitiaoError(
      `${model}: no such model folder (download it first, e.g. huggingface-cli download ${model} --local-dir ./${model.split("/").pop()})`,
    );
  }
  if (statSync(model).isDirectory()) {
    if (modelConfig) throw new WeitiaoError(`--model-config only applies when --model is a weights file, not a folder`);
    return { dir: model };
  }
  if (!modelConfig) {
    throw new WeitiaoError(
      `${model}: a bare weights file needs --model-config DIR (a folder with config.json and the tokenizer files, e.g. the base model it was trained from)`,
    );
  }
  if (!existsSync(modelConfig)) throw new WeitiaoError(`${modelConfig}: --model-config not found`);
  const dir = statSync(modelConfig).isDirectory() ? modelConfig : dirname(modelConfig);
  return { dir, weightsFile: model };
}

/** The folder holding config.json and the tokenizer. */
export function resolveModel(model: string, modelConfig?: string): string {
  return locateModel(model, modelConfig).dir;
}
