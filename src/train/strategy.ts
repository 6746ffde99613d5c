/**
 * Which parameters train, per strategy, and the layer-wise lr decay factor of each parameter.
 * Module depth (ParamSpec.level): 0 embeddings, 1…L encoder layers, L+1 pooler, L+2 classifier.
 */
import type { ParamSpec } from "../model/params.js";
import { isSavedModule, type LoraSpec } from "../model/lora.js";
import { WeitiaoError } from "../util/errors.js";

export type Strategy = "full" | "head" | "top-k" | "gradual" | "lora";
export const STRATEGIES: Strategy[] = ["full", "head", "top-k", "gradual", "lora"];

/**
 * The set of trainable parameters in a given epoch (1-based).
 * - full: everything; head: classifier only (the pooler is frozen too, as the tutorial's
 *   `for p in model.bert.parameters(): p.requires_grad = False`); top-k: classifier, pooler, top K layers;
 * - gradual (ULMFiT): epoch 1 as head, epoch e ≥ 2 as top-k with K = e−1; once every layer trains, the
 *   embeddings join;
 * - lora: the adapter matrices and the modules PEFT trains whole (model/lora.ts), the base frozen.
 */
export function trainablePredicate(strategy: Strategy, numLayers: number, epoch: number, topK?: number, lora: LoraSpec | null = null): (spec: ParamSpec) => boolean {
  const L = numLayers;
  const topKLevels = (k: number) => (s: ParamSpec) => s.level >= L + 1 - Math.min(k, L);
  switch (strategy) {
    case "full":
      return () => true;
    case "lora":
      if (!lora) throw new WeitiaoError("--strategy lora needs a model with LoRA adapters (the trainer's model was built without)");
      return (s) => s.kind === "lora" || isSavedModule(lora, s.name);
    case "head":
      return (s) => s.level === L + 2;
    case "top-k": {
      if (topK === undefined || !Number.isInteger(topK) || topK < 0 || topK > L) {
        throw new WeitiaoError(`--top-k must be an integer from 0 to ${L} (the model's layers) with --strategy top-k`);
      }
      return topKLevels(topK);
    }
    case "gradual": {
      if (epoch <= 1) return (s) => s.level === L + 2;
      const k = epoch - 1;
      return k > L ? () => true : topKLevels(k);
    }
  }
}

/**
 * ELECTRA-style layer-wise lr decay D: classifier and pooler get lr; encoder layer L−1−j gets lr·D^(j+1) (the top
 * layer lr·D); embeddings lr·D^(L+1).
 */
export function layerLrScale(level: number, numLayers: number, decay: number | undefined): number {
  if (decay === undefined || decay === 1) return 1;
  const exponent = Math.max(0, numLayers + 1 - level);
  return Math.pow(decay, exponent);
}

/**
 * Strategies that freeze by depth need one parameter set per depth: ALBERT's layers share their groups' parameters,
 * so top-k, gradual unfreezing and layer-wise lr decay mean nothing there (full and head do).
 */
export function checkStrategyApplies(strategy: Strategy, layers: number, sharedGroups: number, layerLrDecay?: number): void {
  if (!sharedGroups || sharedGroups >= layers) return;
  const what = strategy === "top-k" || strategy === "gradual" ? `--strategy ${strategy}` : layerLrDecay !== undefined && layerLrDecay !== 1 ? "--layer-lr-decay" : null;
  if (what) {
    throw new WeitiaoError(
      `${what} freezes or scales layers by depth, but this model's ${layers} layers share ${sharedGroups} parameter group(s) (ALBERT): use --strategy full or head`,
    );
  }
}
