// "Run scenario": 5 s inventory latency on, a burst of orders, wait, gremlin off, recovery.
// Each step is logged in the panel (aria-live), so the story can be followed without looking.

import { gremlinOff, setGremlin, refreshGremlin } from "./gremlin.js";
import { openOrders, placeOrder, productList, loadProducts } from "./orders.js";
import { latestSummary, refreshMonitor } from "./monitor.js";
import { describe } from "./api.js";
import { $, h, sleep } from "./ui.js";

export const SCENARIO = {
  latency: { enabled: true, delayMs: 5000, every: 1 },
  burst: 10,
  inFlight: 6,        // in flight at once: enough to be slow before the circuit opens, not a stampede
  settleMs: 2500,     // the gremlin is read through a ~1 s cache
  holdMs: 18000,      // gremlin on for this long after the burst started
  recoveryMs: 45000,  // how long to watch for the recovery
};

let running = false;

/** Run `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function log(text, state = "info") {
  const item = h("li", { dataset: { state } }, `${new Date().toLocaleTimeString([], { hour12: false })} ${text}`);
  $("#scenario-log").append(item);
  return item;
}

function pickProducts(n) {
  const usable = productList().filter((p) => (p.stock ?? 1) > 0);
  const pool = usable.length ? usable : productList();
  if (!pool.length) return [];
  // the seeded catalogue first, then whatever has the most stock: the burst should not be
  // rejected for stock
  const seeded = ["widget", "gadget"];
  const rank = (p) => (seeded.includes(p.productId) && (p.stock ?? n) >= n ? 1e12 : 0) + (p.stock ?? 0);
  pool.sort((a, b) => rank(b) - rank(a));
  return Array.from({ length: n }, (_, i) => pool[i % Math.min(pool.length, 2)].productId);
}

async function run() {
  const button = $("#run-scenario");
  running = true;
  button.disabled = true;
  button.textContent = "Scenario running…";
  $("#scenario-log").replaceChildren();
  try {
    if (!productList().length) await loadProducts();
    const ids = pickProducts(SCENARIO.burst);
    if (!ids.length) { log("No products to order: is the API up?", "bad"); return; }

    log("Turning on 5 s latency for inventory…");
    const on = await setGremlin({ latency: SCENARIO.latency, error: { enabled: false }, crash: { enabled: false } });
    if (!on.ok) { log(`Could not turn the gremlin on (${on.cancelled ? "admin key needed" : describe(on)}).`, "bad"); return; }
    refreshGremlin();
    await sleep(SCENARIO.settleMs);

    log(`Firing a burst of ${ids.length} orders: each waits at most 2 s for inventory, then falls back to the queue…`);
    const burstStarted = Date.now();
    const results = await pool(ids, SCENARIO.inFlight, (id) => placeOrder(id, 1));
    const count = (s) => results.filter((r) => r.status === s).length;
    const failed = results.filter((r) => r.error).length;
    log(`Burst answered: ${count("QUEUED")} QUEUED, ${count("CONFIRMED")} CONFIRMED, ${count("REJECTED")} REJECTED${failed ? `, ${failed} failed` : ""}.`,
      count("QUEUED") ? "warn" : "info");
    refreshMonitor();

    log("Holding the gremlin on: the latency alert should turn red…");
    await sleep(Math.max(0, burstStarted + SCENARIO.holdMs - Date.now()));
    const summary = latestSummary();
    if (summary && summary.orderLatency && summary.orderLatency.averageMs) {
      log(`Order service average now ${Math.round(summary.orderLatency.averageMs)} ms.`,
        summary.orderLatency.averageMs > 1000 ? "bad" : "info");
    }

    log("Switching the gremlin off…");
    const off = await gremlinOff();
    if (!off.ok) { log(`Could not switch the gremlin off (${describe(off)}): use "All off".`, "bad"); return; }
    refreshGremlin();

    log("Recovery: queued orders complete and the 30 s window drains…");
    const deadline = Date.now() + SCENARIO.recoveryMs;
    let ordersDone = false;
    let latencyDone = false;
    while (Date.now() < deadline && !(ordersDone && latencyDone)) {
      await sleep(1000);
      if (!ordersDone && openOrders().length === 0) { ordersDone = true; log("All orders have a final state.", "ok"); }
      const indicator = $("#latency-indicator").dataset.state;
      if (!latencyDone && indicator === "ok") { latencyDone = true; log("Latency alert is green again.", "ok"); }
    }
    log(ordersDone && latencyDone ? "Scenario complete: nothing lost, everything recovered." : "Scenario finished; recovery is still in progress.",
      ordersDone && latencyDone ? "ok" : "warn");
  } finally {
    running = false;
    button.disabled = false;
    button.textContent = "Run scenario";
  }
}

export function initScenario() {
  $("#run-scenario").addEventListener("click", () => { if (!running) run(); });
}
