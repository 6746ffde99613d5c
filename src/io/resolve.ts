/**
 * Turn --model (and --model-config) into a local folder plus, optionally, a separate weights file: a model
 * folder, the bundled demo model, a hub id (downloaded into the HF cache), or a bare weights file such as the
 * tutorial's bert_finetuned.pth whose config.json and tokenizer come from --model-config.
 */
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { WeitiaoError } from "../util/errors.js";
import { downloadModel, type HubOptions, isHubId } from "./hub.js";

/** The tiny demo model shipped in the package (random weights, bert-base-chinese vocabulary). */
export const DEMO_MODEL_DIR = fileURLToPath(new URL("../../../demo/model/", import.meta.url));
export const DEMO_DATA_DIR = fileURLToPath(new URL("../../../demo/data/", import.meta.url));

export interface ModelLocation {
  /** Folder with config.json and the tokenizer files. */
  dir: string;
  /** Weights to load instead of the folder's own. */
  weightsFile?: string;
  /** The hub id it was downloaded as (its name for others, as HF's name_or_path). */
  hubId?: string;
}

export async function locateModel(model: string, modelConfig?: string, hub: HubOptions = {}): Promise<ModelLocation> {
  if (model === "demo") return { dir: DEMO_MODEL_DIR };
  if (!existsSync(model)) {
    if (!isHubId(model)) throw new WeitiaoError(`${model}: no such model folder or file`);
    try {
      return { dir: await downloadModel(model, hub), hubId: model.replace(/@.*$/, "") };
    } catch (e) {
      // A mistyped local path reads as a hub id too: say first that no such folder exists here.
      if (!(e instanceof WeitiaoError)) throw e;
      const why = e.message.startsWith(`${model}: `) ? e.message.slice(model.length + 2) : e.message;
      throw new WeitiaoError(`${model}: no such model folder or file (${resolve(model)}), and as a hub model id: ${why}`);
    }
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
export async function resolveModel(model: string, modelConfig?: string, hub: HubOptions = {}): Promise<string> {
  return (await locateModel(model, modelConfig, hub)).dir;
}
