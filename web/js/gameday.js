// "Game day" panel: the latest `make gameday` scorecard. scripts/gameday.py publishes it next to
// this page (gameday/scorecard.json in the website bucket); `make up` puts a "none yet" one there
// first. Shows the result, each SLO (target, actual, pass/fail, the first reason it failed) and
// the per-phase numbers. Everything from the file goes in as text, never as HTML.

import { describe, request } from "./api.js";
import { $, announce, every, fmtMsShort, fmtNum, h } from "./ui.js";

export const SCORECARD_URL = "gameday/scorecard.json";
const REFRESH_MS = 15000;

let shownRun = null;

const text = (value) => (value === null || value === undefined ? "—" : String(value));
const share = (value) => (typeof value === "number" ? `${(value * 100).toFixed(1)} %` : "—");
const list = (value) => (Array.isArray(value) ? value.filter((v) => v && typeof v === "object") : []);

function setResult(state, label, summary) {
  $("#gameday-panel").dataset.status = state;
  const pill = $("#gameday-result");
  pill.dataset.state = state;
  pill.textContent = label;
  $("#gameday-summary").textContent = summary;
}

function sloRow(slo) {
  const passed = slo.pass === true;
  const details = Array.isArray(slo.details) ? slo.details : [];
  return h("tr", { dataset: { slo: text(slo.id), pass: String(passed) } },
    h("th", { scope: "row" }, text(slo.name)),
    h("td", {}, text(slo.target)),
    h("td", {}, text(slo.actual),
      !passed && details.length ? h("span", { class: "slo-detail" }, text(details[0])) : null),
    h("td", { class: passed ? "good" : "bad" }, passed ? "PASS" : "FAIL"));
}

function phaseRow(phase) {
  const answers = phase.answers && typeof phase.answers === "object" ? phase.answers : {};
  const lost = typeof phase.lost === "number" ? phase.lost : null;
  return h("tr", { dataset: { phase: text(phase.name) } },
    h("th", { scope: "row" }, text(phase.name)),
    h("td", { dataset: { field: "fault" } }, text(phase.fault)),
    h("td", { dataset: { field: "orders" } }, fmtNum(phase.orders)),
    ...["201", "202", "409", "other"].map((code) => h("td", { dataset: { field: code } }, fmtNum(answers[code]))),
    h("td", { dataset: { field: "within" } }, share(phase.withinTargetShare)),
    h("td", { dataset: { field: "p99" } }, fmtMsShort(phase.p99Ms)),
    h("td", { dataset: { field: "lost" }, class: lost ? "bad" : "" }, fmtNum(lost)));
}

export function renderScorecard(card) {
  const tables = $("#gameday-tables");
  if (!card || card.status === "none") {
    setResult("unknown", "none yet", "No game day has run yet: `make gameday` runs one and shows its scorecard here.");
    tables.hidden = true;
    return;
  }
  const passed = card.status === "pass";
  const totals = card.totals && typeof card.totals === "object" ? card.totals : {};
  const when = card.startedAt ? new Date(card.startedAt) : null;
  const at = when && !Number.isNaN(when.getTime()) ? when.toLocaleString([], { hour12: false }) : text(card.startedAt);
  setResult(passed ? "pass" : "fail", passed ? "PASS" : "FAIL",
    `Scenario "${text(card.scenario)}" at ${at} (scale ${text(card.scale)}): ${fmtNum(totals.orders)} orders, `
    + `${fmtNum(totals.lost)} lost, p99 ${fmtMsShort(totals.p99Ms)}.`);
  $("#gameday-slos tbody").replaceChildren(...list(card.slos).map(sloRow));
  $("#gameday-phases tbody").replaceChildren(...list(card.phases).map(phaseRow));
  tables.hidden = false;
  const run = `${card.scenario}@${card.startedAt}`;
  if (shownRun !== null && shownRun !== run) announce(`New game day scorecard: ${passed ? "every SLO met" : "an SLO failed"}`);
  shownRun = run;
}

export function initGameday() {
  const poller = every(REFRESH_MS, async () => {
    const result = await request(SCORECARD_URL, { source: null, timeoutMs: 10000 });
    if (!result.ok || !result.data || typeof result.data !== "object") {
      setResult("unknown", "unknown", `The latest scorecard could not be read (${describe(result)}).`);
      $("#gameday-tables").hidden = true;
      return;
    }
    renderScorecard(result.data);
  });
  return poller;
}
