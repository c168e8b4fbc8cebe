// Inline SVG sparkline of [{t, averageMs}] with a dashed alert threshold; gaps for nulls.

import { svg } from "./ui.js";

const W = 300;
const H = 64;
const PAD = 4;

export function sparkline(series, { threshold = 1000, label = "sparkline" } = {}) {
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label,
    class: "spark", focusable: "false",
  });
  const values = series.map((p) => (p && typeof p.averageMs === "number" ? p.averageMs : null));
  const max = Math.max(threshold * 1.5, ...values.filter((v) => v !== null).map((v) => v * 1.1));
  const n = Math.max(values.length - 1, 1);
  const x = (i) => PAD + (i / n) * (W - 2 * PAD);
  const y = (v) => H - PAD - (Math.min(v, max) / max) * (H - 2 * PAD);

  root.append(svg("rect", { x: 0, y: 0, width: W, height: y(threshold), class: "spark-danger-zone" }));
  root.append(svg("line", { x1: 0, x2: W, y1: y(threshold), y2: y(threshold), class: "spark-threshold" }));

  // split into runs of consecutive non-null values
  let run = [];
  const runs = [];
  values.forEach((v, i) => {
    if (v === null) { if (run.length) runs.push(run); run = []; } else run.push([x(i), y(v), v]);
  });
  if (run.length) runs.push(run);
  for (const r of runs) {
    if (r.length === 1) {
      root.append(svg("circle", { cx: r[0][0], cy: r[0][1], r: 2, class: r[0][2] > threshold ? "spark-dot bad" : "spark-dot" }));
    } else {
      root.append(svg("polyline", { points: r.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "), class: "spark-line" }));
    }
  }
  const last = values.length ? values[values.length - 1] : null;
  if (last !== null) {
    root.append(svg("circle", { cx: x(values.length - 1), cy: y(last), r: 3, class: last > threshold ? "spark-dot bad" : "spark-dot" }));
  }
  return root;
}
