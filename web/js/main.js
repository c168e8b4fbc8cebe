// Entry point: load config.json (written next to index.html by `make up`), then start the panels.

import { config, loadConfig } from "./api.js";
import { initGameday } from "./gameday.js";
import { initGremlin } from "./gremlin.js";
import { initMonitor } from "./monitor.js";
import { initOrders } from "./orders.js";
import { initScenario } from "./scenario.js";
import { $, h, reportProblem, sleep } from "./ui.js";

window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const reason = event.reason && event.reason.message ? event.reason.message : String(event.reason);
  reportProblem("internal", `Dashboard error: ${reason}`);
});

async function start() {
  let delay = 1000;
  while (!(await loadConfig())) {
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
  $("#endpoints").replaceChildren(
    "API ", h("code", {}, config.apiUrl),
    ...(config.metricsUrl ? [" · metrics ", h("code", {}, config.metricsUrl)] : [" · no metrics exporter configured"]),
    // Prometheus (started by `make up`) evaluates the project's alert rules: watch them fire there
    // (its root redirects to whichever UI the installed build has; the Alerts tab is in both).
    ...(config.prometheusUrl ? [" · ", h("a", { id: "prometheus-link", href: `${config.prometheusUrl}/`,
      target: "_blank", rel: "noopener noreferrer" }, "Prometheus (alerts)")] : []));
  initOrders();
  initGremlin();
  initScenario();
  initMonitor();
  initGameday();
  document.body.dataset.ready = "true";
}

start();
