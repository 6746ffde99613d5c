/**
 * Data hygiene before training: what was read, what was skipped and why, duplicates (reported, never removed),
 * token-length percentiles and label balance — so nothing happens to the data silently.
 */
import type { EncodedExample, SkippedRow, TextExample } from "./dataset.js";

export interface DataReport {
  rows: number;
  skipped: Record<string, string[]>;
  duplicates: { count: number; examples: string[] };
  lengths: { p50: number; p90: number; p99: number; max: number };
  truncated: number;
  labels: Record<string, number>;
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]!;
}

export function dataReport(examples: TextExample[], skipped: SkippedRow[], encoded: EncodedExample[], truncated: number, labelNames: string[]): DataReport {
  const byReason: Record<string, string[]> = {};
  for (const s of skipped) (byReason[s.reason] ??= []).push(`${s.file}:${s.line}`);
  const seen = new Map<string, TextExample>();
  const dupes: string[] = [];
  let count = 0;
  for (const e of examples) {
    const key = `${e.text}\u0000${e.pair ?? ""}`;
    const first = seen.get(key);
    if (first) {
      count++;
      if (dupes.length < 5) dupes.push(`${e.file}:${e.line} repeats ${first.file}:${first.line}`);
    } else seen.set(key, e);
  }
  const lengths = encoded.map((e) => e.inputIds.length).sort((a, b) => a - b);
  let labels: Record<string, number> = Object.fromEntries(labelNames.map((n) => [n, 0]));
  for (const e of encoded) {
    if (e.label >= 0) labels[labelNames[e.label]!]! += 1;
    else if (e.target && e.target.length === labelNames.length && labelNames.length > 1) e.target.forEach((v, c) => (labels[labelNames[c]!]! += v));
  }
  if (encoded.length && encoded.every((e) => e.target?.length === 1)) {
    const v = encoded.map((e) => e.target![0]!);
    labels = { min: Math.min(...v), max: Math.max(...v), mean: v.reduce((a, b) => a + b, 0) / v.length };
  }
  return {
    rows: examples.length + skipped.length,
    skipped: byReason,
    duplicates: { count, examples: dupes },
    lengths: { p50: percentile(lengths, 0.5), p90: percentile(lengths, 0.9), p99: percentile(lengths, 0.99), max: lengths[lengths.length - 1] ?? 0 },
    truncated,
    labels,
  };
}

/** The report as the lines printed before training. */
export function reportLines(name: string, r: DataReport, maxLength: number): string[] {
  const lines = [`${name}: ${r.rows} rows read, ${r.rows - Object.values(r.skipped).reduce((a, b) => a + b.length, 0)} used`];
  for (const [reason, where] of Object.entries(r.skipped)) {
    lines.push(`${name}: skipped ${where.length} row(s) with ${reason}: ${where.slice(0, 5).join(", ")}${where.length > 5 ? ", …" : ""}`);
  }
  if (r.duplicates.count) {
    lines.push(`${name}: ${r.duplicates.count} duplicate row(s) kept (not removed): ${r.duplicates.examples.join("; ")}${r.duplicates.count > 5 ? "; …" : ""}`);
  }
  lines.push(`${name}: tokens per row p50 ${r.lengths.p50}, p90 ${r.lengths.p90}, p99 ${r.lengths.p99}, max ${r.lengths.max}` +
    (r.truncated ? `; ${r.truncated} row(s) truncated to ${maxLength}` : ""));
  lines.push(`${name}: labels ${Object.entries(r.labels).map(([n, c]) => `${n}: ${c}`).join(", ")}`);
  return lines;
}
