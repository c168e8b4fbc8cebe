// Small DOM helpers shared by every panel: element builder, banner, screen-reader announcer.

export const $ = (selector, root = document) => root.querySelector(selector);

/** h("li", {class: "x", dataset: {a: 1}}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// ---- banner: one line per failing source, cleared when the source answers again --------
const problems = new Map();

export function reportProblem(source, message) {
  if (problems.get(source) === message) return;
  problems.set(source, message);
  renderBanner();
}

export function clearProblem(source) {
  if (problems.delete(source)) renderBanner();
}

function renderBanner() {
  const banner = document.getElementById("banner");
  if (!banner) return;
  banner.replaceChildren(...[...problems.values()].map((m) => h("p", {}, m)));
  banner.hidden = problems.size === 0;
}

// ---- announcements for assistive technology ----------------------------------------------
let announceTimer = null;
const pending = [];
export function announce(message) {
  pending.push(message);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const region = document.getElementById("announcer");
    if (region) region.textContent = pending.splice(0).join(". ");
  }, 250);
}

// ---- formatting -------------------------------------------------------------------------
export function fmtMs(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
  return `${Math.round(value)} ms`;
}

/** Shorter, for table cells: "85 ms", "2.05 s". */
export function fmtMsShort(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 1 : 2)} s` : `${Math.round(value)} ms`;
}

export function fmtNum(value) {
  if (value === null || value === undefined) return "—";
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour12: false });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run `fn` now and then `ms` after each run finishes; never overlapping. `.now()` re-runs soon. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  let running = false;
  let again = false;
  const loop = async () => {
    if (stopped) return;
    if (running) { again = true; return; }
    running = true;
    clearTimeout(timer);
    try {
      await fn();
    } catch (err) {
      reportProblem("internal", `Dashboard error: ${err && err.message ? err.message : err}`);
    }
    running = false;
    if (stopped) return;
    if (again) { again = false; loop(); } else { timer = setTimeout(loop, ms); }
  };
  loop();
  return {
    stop() { stopped = true; clearTimeout(timer); },
    now: loop,
  };
}
