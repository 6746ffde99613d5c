/** Turn the --model argument into a local folder: a path, the bundled demo model, or (later) a hub download. */
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { WeitiaoError } from "../util/errors.js";

/** The tiny demo model shipped in the package (random weights, bert-base-chinese vocabulary). */
export const DEMO_MODEL_DIR = fileURLToPath(new URL("../../../demo/model/", import.meta.url));
export const DEMO_DATA_DIR = fileURLToPath(new URL("../../../demo/data/", import.meta.url));

export function resolveModel(model: string, _log: (line: string) => void = () => {}): string {
  if (model === "demo") return DEMO_MODEL_DIR;
  if (existsSync(model)) {
    if (!statSync(model).isDirectory()) throw new WeitiaoError(`${model}: --model must be a model folder (with config.json), not a file`);
    return model;
  }
  throw new WeitiaoError(
    `${model}: no such model folder (download it first, e.g. with huggingface-cli download ${model} --local-dir ./${model.split("/").pop()})`,
  );
}
