// Gremlin panel: shows GET /gremlin, applies PUT /gremlin, "all off" = DELETE /gremlin.
// PUT/DELETE need the admin API key (header x-api-key): asked once, kept in sessionStorage
// (this tab only, gone when it closes; never in localStorage, which any later visitor of this
// browser profile could read), asked again when the API answers 401/403.

import { api, describe } from "./api.js";
import { $, announce, every } from "./ui.js";

const KEY_STORAGE = "valerix.adminKey";
const MODES = ["latency", "error", "crash", "database"];

let current = null; // last document read from or written to the API
let formTouched = false;
let poller = null;
let writes = 0; // bumped around every PUT/DELETE: a GET that overlapped a write is stale

// ---- admin key ----------------------------------------------------------------------------
// Earlier versions kept the key in localStorage: remove what they left behind.
try { localStorage.removeItem(KEY_STORAGE); } catch { /* no storage */ }

export function storedKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* ignore */ }
}

/** Resolves to the key typed into the dialog, or "" when cancelled. */
function askForKey(reason) {
  const dialog = $("#key-dialog");
  const input = $("#admin-key");
  $("#key-dialog-reason").textContent = reason;
  input.value = "";
  return new Promise((resolve) => {
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      const key = dialog.returnValue === "save" ? input.value.trim() : "";
      if (key) storeKey(key);
      resolve(key);
    };
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
    input.focus();
  });
}

const FIRST_ASK = "Changing the gremlin needs the admin API key (printed by make up, in .valerix/outputs.json). It is kept for this tab only (session storage).";

/** PUT/DELETE /gremlin with the key; asks for it when missing, once more after a 401/403. */
export async function adminCall(method, body) {
  let key = storedKey() || (await askForKey(FIRST_ASK));
  if (!key) return { ok: false, status: 0, data: null, error: "no admin key given", cancelled: true };
  for (let attempt = 0; attempt < 2; attempt += 1) {
    writes += 1;
    const result = await api("/gremlin", { method, body, headers: { "x-api-key": key } });
    writes += 1;
    if (result.status !== 401 && result.status !== 403) {
      if (result.ok && result.data) showState(result.data, true);
      return result;
    }
    storeKey("");
    if (attempt === 1) return result;
    key = await askForKey(`The API refused that key (${result.status}). Enter the admin API key again.`);
    if (!key) return { ...result, cancelled: true };
  }
  return { ok: false, status: 0, data: null, error: "unreachable" };
}

export const setGremlin = (doc) => adminCall("PUT", doc);
export const gremlinOff = () => adminCall("DELETE");

// ---- state display ------------------------------------------------------------------------
function selectorText(mode) {
  if (mode.every !== undefined && mode.every !== null) return mode.every === 1 ? "every request" : `every ${mode.every}th request`;
  if (mode.percentage !== undefined && mode.percentage !== null) return `${mode.percentage}% of requests`;
  return "every request";
}

export function describeDoc(doc) {
  const parts = [];
  if (doc.latency && doc.latency.enabled) parts.push(`latency ${doc.latency.delayMs} ms on ${selectorText(doc.latency)}`);
  if (doc.error && doc.error.enabled) parts.push(`error ${doc.error.statusCode || 500} on ${selectorText(doc.error)}`);
  if (doc.crash && doc.crash.enabled) parts.push(`crash ${doc.crash.when || "before-commit"} on ${selectorText(doc.crash)}`);
  if (doc.database && doc.database.enabled) {
    const db = doc.database;
    const what = db.fault === "slow" ? `slow (${db.delayMs} ms)`
      : db.fault === "locked" ? `lock held ${db.delayMs} ms`
      : db.fault === "exhausted" ? "connections exhausted" : "unreachable";
    parts.push(`database ${what} on ${selectorText(db).replace("request", "transaction")}`);
  }
  return parts.length ? parts.join("; ") : "all off";
}

// ---- safety switch: each setting's expiry ------------------------------------------------------
// The API answers remainingSeconds at read time; counted down locally between reads (anchored to
// the read, not to the browser's wall clock, which may disagree with the server's).
let expiryAnchor = { doc: null, at: 0 };

export function formatRemaining(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

export function describeExpiry(doc, elapsedSeconds = 0) {
  const parts = [];
  if (doc.stopped) parts.push(`stopped by alarm ${doc.stopped.alarm} at ${doc.stopped.at}`);
  for (const m of MODES) {
    const mode = doc[m];
    if (!mode || mode.remainingSeconds === undefined) continue;
    const left = mode.remainingSeconds - elapsedSeconds;
    if (mode.expired || left <= 0) parts.push(`${m}: expired (off)`);
    else if (mode.enabled) parts.push(`${m}: off in ${formatRemaining(left)}`);
  }
  return parts.join("; ");
}

function renderExpiry() {
  const el = $("#gremlin-expiry");
  if (!el || !expiryAnchor.doc) return;
  el.textContent = describeExpiry(expiryAnchor.doc, (Date.now() - expiryAnchor.at) / 1000);
}

const anyOn = (doc) => MODES.some((m) => doc[m] && doc[m].enabled);

function showState(doc, fromWrite = false) {
  const before = current && describeDoc(current);
  current = doc;
  const text = describeDoc(doc);
  const pill = $("#gremlin-pill");
  pill.dataset.state = anyOn(doc) ? "on" : "off";
  pill.textContent = anyOn(doc) ? "ON" : "off";
  $("#gremlin-state").textContent = `Current gremlin: ${text}.`;
  expiryAnchor = { doc, at: Date.now() };
  renderExpiry();
  if (before !== undefined && before !== null && before !== text) announce(`Gremlin now ${text}`);
  if (fromWrite || !formTouched) fillForm(doc);
  if (fromWrite) formTouched = false;
}

function fillForm(doc) {
  for (const m of MODES) {
    const mode = doc[m] || {};
    $(`#g-${m}-enabled`).checked = Boolean(mode.enabled);
    let sel = "all";
    let amount = null;
    if (mode.every !== undefined && mode.every !== null) { sel = "every"; amount = mode.every; }
    else if (mode.percentage !== undefined && mode.percentage !== null) { sel = "percentage"; amount = mode.percentage; }
    if (mode.enabled || amount !== null) {
      $(`#g-${m}-select`).value = sel;
      if (amount !== null) $(`#g-${m}-amount`).value = amount;
    }
  }
  if (doc.latency && doc.latency.delayMs) $("#g-latency-delay").value = doc.latency.delayMs;
  if (doc.error && doc.error.statusCode) $("#g-error-status").value = doc.error.statusCode;
  if (doc.crash && doc.crash.when) $("#g-crash-when").value = doc.crash.when;
  if (doc.database && doc.database.fault) $("#g-database-fault").value = doc.database.fault;
  if (doc.database && doc.database.delayMs) $("#g-database-delay").value = doc.database.delayMs;
  syncAmountInputs();
}

function syncAmountInputs() {
  for (const m of MODES) {
    const sel = $(`#g-${m}-select`).value;
    const amount = $(`#g-${m}-amount`);
    amount.disabled = sel === "all";
    amount.max = sel === "percentage" ? "100" : "1000000";
    amount.min = sel === "percentage" ? "0" : "1";
  }
}

async function refresh() {
  const before = writes;
  const result = await api("/gremlin");
  if (before !== writes) return; // a write happened meanwhile: its answer is the newer state
  if (result.ok && result.data) showState(result.data);
  else $("#gremlin-state").textContent = `Could not read the gremlin (${describe(result)}).`;
}

// ---- form -> document -----------------------------------------------------------------------
function readNumber(id, { min, max, integer = true, name }) {
  const value = Number($(id).value);
  if ($(id).value === "" || Number.isNaN(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    throw new Error(`${name} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max}`);
  }
  return value;
}

export function formDocument() {
  const doc = {};
  for (const m of MODES) {
    const mode = { enabled: $(`#g-${m}-enabled`).checked };
    const sel = $(`#g-${m}-select`).value;
    if (mode.enabled) {
      if (sel === "every") mode.every = readNumber(`#g-${m}-amount`, { min: 1, max: 1000000, name: `${m}: N` });
      if (sel === "percentage") mode.percentage = readNumber(`#g-${m}-amount`, { min: 0, max: 100, integer: false, name: `${m}: percentage` });
    }
    doc[m] = mode;
  }
  if (doc.latency.enabled) doc.latency.delayMs = readNumber("#g-latency-delay", { min: 0, max: 60000, name: "latency: delay" });
  if (doc.error.enabled) doc.error.statusCode = readNumber("#g-error-status", { min: 400, max: 599, name: "error: status code" });
  if (doc.crash.enabled) doc.crash.when = $("#g-crash-when").value;
  if (doc.database.enabled) {
    doc.database.fault = $("#g-database-fault").value;
    if (doc.database.fault === "slow" || doc.database.fault === "locked") doc.database.delayMs = readNumber("#g-database-delay", { min: 0, max: 60000, name: "database: delay" });
  }
  const minutes = readNumber("#g-expiry-minutes", { min: 1, max: 1440, name: "switch off after (minutes)" });
  for (const m of MODES) if (doc[m].enabled) doc[m].expiresInSeconds = minutes * 60;
  return doc;
}

async function withButtons(fn) {
  const buttons = ["#gremlin-apply", "#gremlin-off"].map((s) => $(s));
  buttons.forEach((b) => { b.disabled = true; });
  try { return await fn(); } finally { buttons.forEach((b) => { b.disabled = false; }); }
}

function reportResult(result, done) {
  const feedback = $("#gremlin-feedback");
  if (result.ok) feedback.textContent = done;
  else if (result.cancelled) feedback.textContent = "Not changed: the admin API key is needed.";
  else feedback.textContent = `Not changed (${describe(result)}).`;
}

export function initGremlin() {
  $("#gremlin-form").addEventListener("input", () => { formTouched = true; syncAmountInputs(); });
  $("#gremlin-form").addEventListener("change", () => { formTouched = true; syncAmountInputs(); });
  $("#gremlin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    let doc;
    try { doc = formDocument(); } catch (err) { $("#gremlin-feedback").textContent = err.message; return; }
    withButtons(async () => reportResult(await setGremlin(doc), `Applied: ${describeDoc(doc)}.`));
  });
  $("#gremlin-off").addEventListener("click", () => {
    withButtons(async () => reportResult(await gremlinOff(), "All gremlins off."));
  });
  $("#forget-key").addEventListener("click", () => {
    storeKey("");
    $("#gremlin-feedback").textContent = "Admin key forgotten; it will be asked again when needed.";
  });
  syncAmountInputs();
  setInterval(renderExpiry, 1000);
  poller = every(5000, refresh);
}

export const refreshGremlin = () => poller && poller.now();
