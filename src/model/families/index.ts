/** The registry: config.json's `model_type` → its family. Adding a family: a file here and a line below. */
import { albert } from "./albert.js";
import { bert } from "./bert.js";
import { distilbert } from "./distilbert.js";
import { electra } from "./electra.js";
import { ernie } from "./ernie.js";
import type { Family } from "./family.js";
import { roberta } from "./roberta.js";

export const FAMILIES: readonly Family[] = [bert, roberta, electra, distilbert, ernie, albert];

export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.flatMap((f) => f.modelTypes);

export function familyOf(modelType: string): Family | undefined {
  return FAMILIES.find((f) => f.modelTypes.includes(modelType));
}

export type { Family, LayerNames } from "./family.js";
