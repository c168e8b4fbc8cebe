// "Lambda functions" grid: one tile per function from the exporter's summary `lambdas`
// (Lambda's own REPORT lines): memory used (peak Max Memory Used) against MemorySize, cold
// starts with their init duration, p50/p95 of Duration — the "CPU, memory, uptime" grid of a
// server dashboard, in Lambda terms.

import { $, fmtMsShort, fmtNum, h } from "./ui.js";

// above these shares of MemorySize the memory bar turns amber / red
const MEMORY_WARN = 70;
const MEMORY_ALERT = 90;

/** "Valerix-order-api", "Valerix-gremlin" -> strip the common "Valerix-" (the stack name). */
export function shortNames(names) {
  if (names.length < 2) return Object.fromEntries(names.map((n) => [n, n]));
  const first = names[0];
  const dash = first.indexOf("-");
  const prefix = dash > 0 ? first.slice(0, dash + 1) : "";
  const strip = prefix && names.every((n) => n.startsWith(prefix) && n.length > prefix.length);
  return Object.fromEntries(names.map((n) => [n, strip ? n.slice(prefix.length) : n]));
}

function memoryState(percent) {
  if (percent === null || percent === undefined) return "unknown";
  return percent >= MEMORY_ALERT ? "alert" : percent >= MEMORY_WARN ? "warn" : "ok";
}

function memoryBar(f) {
  const percent = typeof f.memoryUsedPercent === "number" ? Math.max(0, Math.min(100, f.memoryUsedPercent)) : null;
  const used = f.maxMemoryUsedMb;
  const size = f.memorySizeMb;
  const text = `${used ?? "—"} / ${size ?? "—"} MB`;
  return h("div", { class: "lambda-memory", dataset: { state: memoryState(percent) } },
    h("div", { class: "lambda-label" },
      h("span", {}, "Memory"),
      h("span", { class: "lambda-value", dataset: { field: "memory" } }, text,
        percent === null ? "" : h("span", { class: "lambda-percent" }, ` (${fmtNum(f.memoryUsedPercent)} %)`))),
    h("div", {
      class: "meter", role: "meter", "aria-label": `Peak memory used of ${size ?? "unknown"} MB`,
      "aria-valuemin": 0, "aria-valuemax": size ?? 0, "aria-valuenow": used ?? 0,
      "aria-valuetext": percent === null ? "unknown" : `${used} of ${size} MB, ${fmtNum(f.memoryUsedPercent)} percent`,
    }, h("span", { class: "meter-fill", style: `width: ${percent ?? 0}%` })));
}

function stat(label, field, value, title) {
  return h("div", { class: "lambda-stat", title },
    h("dt", {}, label), h("dd", { dataset: { field } }, value));
}

function tile(name, short, f) {
  const cold = f.coldStarts || 0;
  const init = cold ? `${fmtMsShort(f.initLastMs)} / ${fmtMsShort(f.initP50Ms)}` : "—";
  return h("li", { class: "lambda-tile", dataset: { function: name } },
    h("h4", { class: "lambda-name", title: name }, short),
    memoryBar(f),
    h("dl", { class: "lambda-stats" },
      stat("Cold starts", "cold-starts", fmtNum(cold), "Execution environments started (REPORT lines with Init Duration)"),
      stat("Init last / p50", "init", init, "Init Duration of cold starts: the newest and the median"),
      stat("p50 / p95", "latency", `${fmtMsShort(f.p50Ms)} / ${fmtMsShort(f.p95Ms)}`,
        "REPORT Duration over the summary's percentile window"),
      stat("Invocations", "invocations", fmtNum(f.invocations), "REPORT lines read")));
}

export function renderLambdas(lambdas) {
  const list = $("#lambda-grid");
  if (!list) return;
  const entries = Object.entries(lambdas && typeof lambdas === "object" ? lambdas : {});
  if (!entries.length) {
    list.replaceChildren(h("li", { class: "hint" }, "no Lambda REPORT lines yet"));
    return;
  }
  const short = shortNames(entries.map(([name]) => name));
  list.replaceChildren(...entries.map(([name, f]) => tile(name, short[name], f || {})));
}
