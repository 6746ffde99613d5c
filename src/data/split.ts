/** Splitting and batching helpers: stratified validation split, length-grouped training order, length-sorted inference batches. */
import { Rng } from "../util/rng.js";

/**
 * Stratified, seeded split: from each label's examples, round(ratio · count) go to validation (at least one when
 * the label has two or more), the rest stay for training; both keep file order.
 */
export function stratifiedSplit(labels: ArrayLike<number>, ratio: number, seed: number): { train: number[]; validation: number[] } {
  const rng = new Rng(seed);
  const byLabel = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (!byLabel.has(l)) byLabel.set(l, []);
    byLabel.get(l)!.push(i);
  }
  const val = new Set<number>();
  for (const l of [...byLabel.keys()].sort((a, b) => a - b)) {
    const idx = byLabel.get(l)!;
    let k = Math.round(ratio * idx.length);
    if (k === 0 && idx.length >= 2 && ratio > 0) k = 1;
    if (k >= idx.length) k = idx.length - 1;
    for (const j of rng.permutation(idx.length).slice(0, k)) val.add(idx[j]!);
  }
  const all = Array.from({ length: labels.length }, (_, i) => i);
  return { train: all.filter((i) => !val.has(i)), validation: all.filter((i) => val.has(i)) };
}

/**
 * HF's group_by_length: shuffle, cut into mega-batches of 50 batches, sort each by length (longest first) so
 * batches hold rows of similar length and padding shrinks, while the order stays random between mega-batches.
 */
export function lengthGroupedOrder(lengths: number[], batchSize: number, rng: Rng): number[] {
  const perm = rng.permutation(lengths.length);
  const mega = batchSize * 50;
  const out: number[] = [];
  for (let i = 0; i < perm.length; i += mega) {
    out.push(...perm.slice(i, i + mega).sort((a, b) => lengths[b]! - lengths[a]!));
  }
  return out;
}

/**
 * Inference batches (evaluation, prediction): example indices by length, longest first, cut into batches, so each
 * batch pads to little more than its own rows where file order pads every batch to its longest row. Callers write
 * results back by index, so the order is invisible: a row's logits do not depend on its batch (padding is masked).
 * Longest first also makes the first batch the largest, so scratch memory grows once.
 */
export function lengthSortedBatches(lengths: number[], batchSize: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}
