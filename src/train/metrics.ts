/**
 * Evaluation metrics, named as HF's compute_metrics usually names them (the trainer adds the eval_ prefix):
 * single-label: accuracy, macro precision/recall/F1, per-class precision/recall/F1, confusion matrix;
 * multi-label: micro/macro F1 and subset accuracy at a threshold; regression: MSE and Pearson r.
 */

export interface ClassificationMetrics {
  accuracy: number;
  macro_precision: number;
  macro_recall: number;
  macro_f1: number;
  per_class: { label: string; precision: number; recall: number; f1: number; support: number }[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

/** Index of the largest of x[off … off+n−1] (the first one on ties). */
/** Softmax of one row of logits (max subtracted first). */
export function softmax(x: number[]): number[] {
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function argmax(x: ArrayLike<number>, off: number, n: number): number {
  let best = 0;
  for (let c = 1; c < n; c++) if (x[off + c]! > x[off + best]!) best = c;
  return best;
}

const safeDiv = (a: number, b: number): number => (b === 0 ? 0 : a / b);
const f1 = (p: number, r: number): number => safeDiv(2 * p * r, p + r);

export function classificationMetrics(labels: ArrayLike<number>, predictions: ArrayLike<number>, names: string[]): ClassificationMetrics {
  const C = names.length;
  const confusion = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  let correct = 0;
  let n = 0;
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (y < 0) continue;
    confusion[y]![predictions[i]!]! += 1;
    if (y === predictions[i]) correct++;
    n++;
  }
  const per_class = names.map((label, c) => {
    const tp = confusion[c]![c]!;
    const predicted = confusion.reduce((s, row) => s + row[c]!, 0);
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const precision = safeDiv(tp, predicted);
    const recall = safeDiv(tp, support);
    return { label, precision, recall, f1: f1(precision, recall), support };
  });
  const mean = (k: "precision" | "recall" | "f1"): number => per_class.reduce((s, c) => s + c[k], 0) / Math.max(1, C);
  return {
    accuracy: safeDiv(correct, n), macro_precision: mean("precision"), macro_recall: mean("recall"), macro_f1: mean("f1"),
    per_class, confusion,
  };
}

export interface MultiLabelMetrics {
  micro_f1: number;
  macro_f1: number;
  subset_accuracy: number;
}

/** targets and probabilities are [rows × C]; a label is predicted when its probability ≥ threshold. */
export function multiLabelMetrics(targets: ArrayLike<number>, probabilities: ArrayLike<number>, rows: number, C: number, threshold: number): MultiLabelMetrics {
  const tp = new Array<number>(C).fill(0), fp = new Array<number>(C).fill(0), fn = new Array<number>(C).fill(0);
  let exact = 0;
  for (let r = 0; r < rows; r++) {
    let all = true;
    for (let c = 0; c < C; c++) {
      const y = targets[r * C + c]! >= 0.5;
      const p = probabilities[r * C + c]! >= threshold;
      if (y && p) tp[c]!++;
      else if (!y && p) fp[c]!++;
      else if (y && !p) fn[c]!++;
      if (y !== p) all = false;
    }
    if (all) exact++;
  }
  const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
  const microP = safeDiv(sum(tp), sum(tp) + sum(fp));
  const microR = safeDiv(sum(tp), sum(tp) + sum(fn));
  const macro = tp.reduce((s, t, c) => s + f1(safeDiv(t, t + fp[c]!), safeDiv(t, t + fn[c]!)), 0) / Math.max(1, C);
  return { micro_f1: f1(microP, microR), macro_f1: macro, subset_accuracy: safeDiv(exact, rows) };
}

export interface RegressionMetrics {
  mse: number;
  pearson: number;
}

export function regressionMetrics(targets: ArrayLike<number>, predictions: ArrayLike<number>): RegressionMetrics {
  const n = targets.length;
  let se = 0, mt = 0, mp = 0;
  for (let i = 0; i < n; i++) {
    se += (predictions[i]! - targets[i]!) ** 2;
    mt += targets[i]!;
    mp += predictions[i]!;
  }
  mt /= n;
  mp /= n;
  let cov = 0, vt = 0, vp = 0;
  for (let i = 0; i < n; i++) {
    cov += (targets[i]! - mt) * (predictions[i]! - mp);
    vt += (targets[i]! - mt) ** 2;
    vp += (predictions[i]! - mp) ** 2;
  }
  return { mse: safeDiv(se, n), pearson: vt > 0 && vp > 0 ? cov / Math.sqrt(vt * vp) : 0 };
}
