// Everything read-only: latency alert + sparkline and metrics (exporter /api/summary),
// traffic lights (GET /health/order, GET /health/inventory, queues + circuit from the summary).

import { api, config, metrics, describe } from "./api.js";
import { renderLambdas } from "./lambdas.js";
import { sparkline } from "./sparkline.js";
import { $, announce, every, fmtMs, fmtMsShort, fmtNum, h } from "./ui.js";

export const ALERT_MS = 1000;
const SUMMARY_MS = 2000;
// /health/order is an order-service request too (it counts in the latency average): not too often.
const HEALTH_MS = 10000;

// ---- latency alert -------------------------------------------------------------------------
let latencyState = null;

function setLatency(state, value, label) {
  const indicator = $("#latency-indicator");
  indicator.dataset.state = state;
  $("#latency-value").textContent = value;
  $("#latency-label").textContent = label;
  if (latencyState !== null && latencyState !== state) {
    announce(state === "alert" ? `Latency alert: order service average ${value}` : `Latency back to normal: ${value}`);
  }
  latencyState = state;
}

const requests = (n) => `${n} request${n === 1 ? "" : "s"}`;

function renderLatency(latency) {
  if (!latency) { setLatency("unknown", "—", "no latency data in the summary"); return; }
  $("#latency-window").textContent = latency.windowSeconds || 30;
  const avg = latency.averageMs;
  if (!latency.samples || avg === null || avg === undefined) {
    setLatency("ok", "no traffic", `no order requests in the last ${latency.windowSeconds || 30} s`);
  } else if (avg > ALERT_MS) {
    setLatency("alert", fmtMs(avg), `average over ${requests(latency.samples)}: above ${ALERT_MS} ms`);
  } else {
    setLatency("ok", fmtMs(avg), `average over ${requests(latency.samples)}`);
  }
  const series = Array.isArray(latency.series) ? latency.series : [];
  $("#latency-sparkline").replaceChildren(sparkline(series, {
    threshold: ALERT_MS,
    label: `Order service average response time, ${series.length} points, threshold ${ALERT_MS} ms`,
  }));
}

// ---- metrics view ----------------------------------------------------------------------------
function kv(target, values, empty = "none yet") {
  const entries = Object.entries(values || {});
  const dl = $(target);
  if (!entries.length) { dl.replaceChildren(h("div", { class: "hint" }, empty)); return; }
  dl.replaceChildren(...entries.map(([k, v]) => h("div", { dataset: { key: k } }, h("dt", {}, k), h("dd", {}, fmtNum(v)))));
}

function renderMetrics(summary) {
  const fns = summary.functions || {};
  const rows = Object.entries(fns).map(([name, f]) =>
    h("tr", { dataset: { function: name } },
      h("th", { scope: "row" }, name),
      h("td", {}, fmtNum(f.invocations)),
      h("td", { class: f.errors > 0 ? "bad" : "" }, fmtNum(f.errors)),
      h("td", {}, fmtMsShort(f.p50Ms)),
      h("td", {}, fmtMsShort(f.p95Ms)),
      h("td", {}, fmtNum(f.coldStarts))));
  $("#metrics-table tbody").replaceChildren(...(rows.length ? rows
    : [h("tr", {}, h("td", { colspan: 6, class: "hint" }, "no function metrics yet"))]));
  renderLambdas(summary.lambdas);
  kv("#metric-fallbacks", summary.fallbacks);
  kv("#metric-injections", summary.gremlinInjections);
  kv("#metric-outcomes", summary.orders);
  const when = summary.generatedAt ? new Date(summary.generatedAt) : null;
  $("#metrics-updated").textContent = when && !Number.isNaN(when.getTime())
    ? `updated ${when.toLocaleTimeString([], { hour12: false })}` : "";
}

// ---- traffic lights --------------------------------------------------------------------------
// Each light: {state: up|warn|down|unknown, detail: short text, reason: why (tooltip + text)}
const LIGHTS = [
  ["order", "Order service"],
  ["order-db", "Order database"],
  ["inventory", "Inventory service"],
  ["inventory-db", "Inventory database"],
  ["inventory-queue", "Inventory queue"],
  ["completion-queue", "Completion queue"],
  ["circuit", "Circuit breaker"],
];
const lights = Object.fromEntries(LIGHTS.map(([id]) => [id, { state: "unknown", detail: "checking…", reason: "" }]));
const STATE_WORD = { up: "OK", warn: "degraded", down: "DOWN", unknown: "unknown" };

function setLight(id, state, detail, reason = "") {
  const prev = lights[id];
  if (prev.state !== state && prev.state !== "unknown" && state !== "unknown") {
    const name = LIGHTS.find(([x]) => x === id)[1];
    announce(`${name} ${STATE_WORD[state]}${reason ? `: ${reason}` : ""}`);
  }
  lights[id] = { state, detail, reason };
}

function renderLights() {
  $("#lights").replaceChildren(...LIGHTS.map(([id, name]) => {
    const l = lights[id];
    return h("li", { class: "light", dataset: { light: id, state: l.state }, title: l.reason || l.detail },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "light-text" },
        h("span", { class: "light-name" }, name),
        h("span", { class: "visually-hidden" }, `: ${STATE_WORD[l.state]}. `),
        h("span", { class: "light-detail" }, l.detail),
        l.reason ? h("span", { class: "light-reason" }, l.reason) : null));
  }));
}

function checkError(check) {
  return check && (check.error || check.message || check.reason) ? String(check.error || check.message || check.reason) : "";
}

function applyHealth(service, result) {
  const body = result.data || {};
  const checks = body.checks && typeof body.checks === "object" ? body.checks : null;
  if (result.status === 0) {
    setLight(service, "down", "unreachable", `GET /health/${service}: ${result.error}`);
  } else if (result.status === 200 && body.status === "UP") {
    setLight(service, "up", "UP");
  } else {
    const failing = checks ? Object.entries(checks).filter(([, c]) => c && c.status !== "UP") : [];
    const why = failing.length
      ? failing.map(([name, c]) => `${name}: ${checkError(c) || c.status}`).join("; ")
      : describe(result);
    setLight(service, "down", body.status || `HTTP ${result.status}`, why);
  }
  const db = checks && (checks.database || checks.db);
  if (db) {
    if (db.status === "UP") setLight(`${service}-db`, "up", db.latencyMs !== undefined ? `UP · ${fmtMs(db.latencyMs)}` : "UP");
    else setLight(`${service}-db`, "down", "DOWN", checkError(db) || "database check failed");
  } else if (result.status === 0) {
    setLight(`${service}-db`, "unknown", "not checked", `the ${service} service did not answer`);
  } else {
    setLight(`${service}-db`, "unknown", "no database check in the answer", describe(result));
  }
  if (service === "order" && typeof body.circuitState === "string") healthCircuit = body.circuitState;
}

// the order service reports its circuit in its health answer; the exporter's gauge wins when present
let healthCircuit = null;

async function pollHealth() {
  const [order, inventory] = await Promise.all([
    api("/health/order", { timeoutMs: 10000 }),
    api("/health/inventory", { timeoutMs: 10000 }),
  ]);
  applyHealth("order", order);
  applyHealth("inventory", inventory);
  renderLights();
}

function applySummaryLights(summary) {
  const queues = summary ? summary.queues || {} : null;
  for (const name of ["inventory", "completion"]) {
    const id = `${name}-queue`;
    if (!queues) { setLight(id, "unknown", "metrics unavailable"); continue; }
    const q = queues[name];
    if (!q) { setLight(id, "unknown", "not reported by the exporter"); continue; }
    const depth = q.depth ?? 0;
    const dlq = q.dlqDepth ?? 0;
    const detail = `depth ${fmtNum(depth)} · DLQ ${fmtNum(dlq)}`;
    if (dlq > 0) setLight(id, "down", detail, `${fmtNum(dlq)} message(s) in the dead-letter queue`);
    else if (depth > 0) setLight(id, "warn", detail, `${fmtNum(depth)} message(s) waiting`);
    else setLight(id, "up", detail);
  }
  const reported = (summary && summary.circuitState) || healthCircuit;
  if (!reported) { setLight("circuit", "unknown", "metrics unavailable"); return; }
  const circuit = String(reported).toLowerCase().replace("_", "-");
  const state = circuit === "closed" ? "up" : circuit === "open" ? "down" : "warn";
  setLight("circuit", state, circuit,
    circuit === "open" ? "order answers QUEUED at once, without calling inventory"
      : circuit === "half-open" ? "trying inventory again" : "");
}

// ---- summary loop ------------------------------------------------------------------------------
let lastSummary = null;
export const latestSummary = () => lastSummary;

async function pollSummary() {
  const result = await metrics("/api/summary", { timeoutMs: 8000 });
  if (!result.ok || !result.data) {
    setLatency("unknown", "—", `metrics unavailable (${describe(result)})`);
    applySummaryLights(null);
    renderLights();
    return;
  }
  lastSummary = result.data;
  renderLatency(result.data.orderLatency);
  renderMetrics(result.data);
  applySummaryLights(result.data);
  renderLights();
}

let summaryLoop = null;
let healthLoop = null;
export const refreshMonitor = () => { summaryLoop && summaryLoop.now(); healthLoop && healthLoop.now(); };

export function initMonitor() {
  renderLights();
  if (config.metricsUrl) summaryLoop = every(SUMMARY_MS, pollSummary);
  else setLatency("unknown", "—", "no metrics exporter configured (config.json metricsUrl)");
  healthLoop = every(HEALTH_MS, pollHealth);
}
