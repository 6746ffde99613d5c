/**
 * report.html: one self-contained file (inline CSS and SVG, no scripts, no network) that opens offline in any
 * browser: loss and learning-rate curves per step, metrics per epoch, the confusion matrix as a heat map (for NER:
 * per-type entity scores and the confusion of entity types), label distribution, hyperparameters, timing and throughput.
 */
import type { DataReport } from "../data/report.js";
import type { EvalResult, EvalLog, StepLog, TrainResult } from "../train/trainer.js";

export interface ReportInput {
  title: string;
  result: TrainResult;
  eval: EvalResult | null;
  test: EvalResult | null;
  labels: string[];
  reports: Record<string, DataReport>;
  args: Record<string, unknown>;
  /** The options the user set (the hyperparameter table shows these and the optimizer and schedule); all when absent. */
  given?: string[];
  samples: number;
}

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const fmt = (v: number): string => (Number.isInteger(v) ? String(v) : Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(4));

/** A line chart of y over x as inline SVG. */
function lineChart(title: string, points: [number, number][], color: string): string {
  const W = 560, H = 220, L = 56, B = 30, T = 24, R = 12;
  if (points.length === 0) return `<figure><figcaption>${esc(title)}</figcaption><p class="muted">no data</p></figure>`;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1e-9 - Math.abs(y0) * 0.1, y1 + 1e-9 + Math.abs(y1) * 0.1];
  const sx = (x: number): number => L + ((x - x0) / Math.max(1e-12, x1 - x0)) * (W - L - R);
  const sy = (y: number): number => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  const ticks = [0, 0.5, 1].map((f) => y0 + f * (y1 - y0));
  return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">
<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="#fafafa" stroke="#ddd"/>
${ticks.map((t) => `<text x="${L - 6}" y="${sy(t) + 4}" text-anchor="end" font-size="11">${fmt(t)}</text><line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`).join("")}
<text x="${L}" y="${H - 8}" font-size="11">${fmt(x0)}</text><text x="${W - R}" y="${H - 8}" font-size="11" text-anchor="end">${fmt(x1)}</text>
<text x="${(L + W) / 2}" y="${H - 8}" font-size="11" text-anchor="middle">step</text>
<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>
${points.length === 1 ? `<circle cx="${sx(points[0]![0])}" cy="${sy(points[0]![1])}" r="3" fill="${color}"/>` : ""}
</svg></figure>`;
}

function heatMap(labels: string[], matrix: number[][]): string {
  const max = Math.max(1, ...matrix.flat());
  // 15 classes and more (TNEWS, CLUENER's types) shrink to fit the page: smaller cells and type, no minimum width
  const dense = labels.length >= 15;
  const cell = (v: number): string => {
    const a = v / max;
    return `<td style="background: rgba(33, 102, 172, ${a.toFixed(3)}); color: ${a > 0.5 ? "#fff" : "#000"}">${v}</td>`;
  };
  return `<table class="cm${dense ? " dense" : ""}"><tr><th>true \\ predicted</th>${labels.map((l) => `<th>${esc(l)}</th>`).join("")}</tr>
${matrix.map((row, i) => `<tr><th>${esc(labels[i]!)}</th>${row.map(cell).join("")}</tr>`).join("\n")}</table>`;
}

function table(rows: [string, unknown][]): string {
  return `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === "number" ? fmt(v) : String(v))}</td></tr>`).join("")}</table>`;
}

export function renderReport(r: ReportInput): string {
  const steps = r.result.logHistory.filter((h): h is StepLog => "loss" in h && "learning_rate" in h);
  const evals = r.result.logHistory.filter((h): h is EvalLog => "eval_loss" in h);
  // one column (and one curve) per validation metric
  const evalKeys = [...new Set(evals.flatMap((e) => Object.keys(e).filter((k) => k.startsWith("eval_"))))];
  const epochRows = r.result.epochs.map((e) => {
    const ev = e.eval as Record<string, number> | undefined;
    return `<tr><td>${e.epoch}</td><td>${fmt(e.loss)}</td><td>${Number.isFinite(e.accuracy) ? fmt(e.accuracy) : "–"}</td>${evalKeys.map((k) => `<td>${ev?.[k] === undefined ? "–" : fmt(ev[k]!)}</td>`).join("")}<td>${e.seconds.toFixed(1)} s</td></tr>`;
  }).join("\n");
  const colors = ["#1b7837", "#762a83", "#e08214", "#2166ac", "#b2182b", "#4d4d4d"];
  const evalCharts = evalKeys.map((k, i) => lineChart(`validation ${k.slice(5).replace(/_/g, " ")}`, evals.flatMap((e) => ((e as unknown as Record<string, number>)[k] === undefined ? [] : [[e.step, (e as unknown as Record<string, number>)[k]!] as [number, number]])), colors[i % colors.length]!)).join("\n");
  const shown = Object.entries(r.args).filter(([k, v]) => v !== null && v !== undefined && typeof v !== "object" &&
    (!r.given || r.given.includes(k) || ["learningRate", "lrSchedulerType", "optim", "batchSize", "epochs", "maxSteps", "strategy", "task", "precision", "backend"].includes(k)));
  const dist = Object.entries(r.reports).map(([name, rep]) => {
    const entries = Object.entries(rep.labels);
    const max = Math.max(1, ...entries.map(([, c]) => c));
    return `<h3>${esc(name)}</h3><table>${entries.map(([l, c]) => `<tr><th>${esc(l)}</th><td>${fmt(c)}</td><td><div class="bar" style="width:${((c / max) * 240).toFixed(0)}px"></div></td></tr>`).join("")}</table>
<p class="muted">${rep.rows} rows read; tokens p50 ${rep.lengths.p50}, p90 ${rep.lengths.p90}, max ${rep.lengths.max}; ${rep.duplicates.count} duplicates kept; ${rep.truncated} truncated</p>`;
  }).join("\n");
  const final = r.eval ?? r.test;
  const secs = r.result.trainSeconds;
  return `<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body { font: 14px/1.45 system-ui, "Noto Sans CJK SC", "PingFang SC", sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.cm td { text-align: center; min-width: 48px; } .cm.dense td, .cm.dense th { min-width: 0; padding: 1px 3px; font-size: 11px; } .muted { color: #777; } figure { display: inline-block; margin: 8px 16px 8px 0; }
figcaption { font-weight: 600; margin-bottom: 4px; } .bar { height: 12px; background: #2166ac; }
.grid { display: flex; flex-wrap: wrap; }
</style></head><body>
<h1>${esc(r.title)}</h1>
<p>${r.result.globalStep} steps in ${secs.toFixed(1)} s (${(r.samples / Math.max(1e-9, secs)).toFixed(1)} samples/s)${r.result.best ? `; best ${esc(r.result.best.metric)} ${fmt(r.result.best.value)} at step ${r.result.best.step}${r.result.best.restored ? " (the saved model)" : ""}` : ""}${r.result.earlyStopped ? "; stopped early" : ""}</p>
<h2>Curves</h2>
<div class="grid">
${lineChart("training loss", steps.map((s) => [s.step, s.loss]), "#b2182b")}
${lineChart("learning rate", steps.map((s) => [s.step, s.learning_rate]), "#2166ac")}
${evalCharts}
</div>
<h2>Epochs</h2>
<table><tr><th>epoch</th><th>train loss</th><th>train accuracy</th>${evalKeys.map((k) => `<th>${esc(k.replace(/^eval_/, "validation "))}</th>`).join("")}<th>time</th></tr>
${epochRows}</table>
${final ? `<h2>Final evaluation</h2>${table(Object.entries(final.metrics).map(([k, v]) => [k, v]))}` : ""}
${final?.classification ? `<h2>Confusion matrix</h2>${heatMap(r.labels, final.classification.confusion)}
<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>${final.classification.per_class.map((c) => `<tr><td>${esc(c.label)}</td><td>${fmt(c.precision)}</td><td>${fmt(c.recall)}</td><td>${fmt(c.f1)}</td><td>${c.support}</td></tr>`).join("")}</table>` : ""}
${final?.entities ? `<h2>Entities</h2>
<table><tr><th>type</th><th>precision</th><th>recall</th><th>F1</th><th>entities</th></tr>${Object.entries(final.entities).map(([t, e]) => `<tr><td>${esc(t)}</td><td>${fmt(e.precision)}</td><td>${fmt(e.recall)}</td><td>${fmt(e.f1)}</td><td>${e.number}</td></tr>`).join("")}</table>` : ""}
${final?.entityConfusion ? `<h3>Entity types, span for span</h3><p class="muted">Row: the reference entity's type; column: the type predicted for the same span (O: missed, or, in row O, spurious).</p>${heatMap(final.entityConfusion.types, final.entityConfusion.matrix)}` : ""}
${r.test && r.eval ? `<h2>Test</h2>${table(Object.entries(r.test.metrics).map(([k, v]) => [`test_${k}`, v]))}` : ""}
${Object.values(r.reports).some((rep) => Object.keys(rep.labels).length) ? `<h2>Labels</h2>
${dist}` : ""}
<h2>Hyperparameters</h2>
${r.given ? `<p class="muted">The options set for this run, with the optimizer and schedule; training_args.json holds every option as resolved.</p>` : ""}
${table(shown)}
<p class="muted">Written by weitiao.</p>
</body></html>
`;
}
