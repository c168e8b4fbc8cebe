// config.json + a fetch wrapper that never throws: every call resolves to
// {ok, status, data, error}. status 0 means the request never got an HTTP answer.

import { clearProblem, reportProblem } from "./ui.js";

export const config = { apiUrl: "", metricsUrl: "", prometheusUrl: "" };

/** Only http(s) URLs become links: a javascript: or data: URL in config.json would run code. */
export function httpUrl(value) {
  if (typeof value !== "string" || !value) return "";
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? value.replace(/\/+$/, "") : "";
  } catch {
    return "";
  }
}

export async function loadConfig() {
  const result = await request("config.json", { source: null, timeoutMs: 10000 });
  if (!result.ok || !result.data || typeof result.data.apiUrl !== "string") {
    reportProblem("config", "Could not load config.json next to this page (it is written by `make up`). Retrying…");
    return false;
  }
  clearProblem("config");
  config.apiUrl = result.data.apiUrl.replace(/\/+$/, "");
  config.metricsUrl = (result.data.metricsUrl || "").replace(/\/+$/, "");
  config.prometheusUrl = httpUrl(result.data.prometheusUrl);
  return true;
}

const LABELS = { api: "the Valerix API", metrics: "the metrics exporter" };

/**
 * fetch() with a timeout, JSON in and out, and banner bookkeeping per `source`
 * ("api" | "metrics" | null): a network failure shows a banner line, any HTTP answer clears it.
 */
export async function request(url, { method = "GET", body, headers = {}, timeoutMs = 15000, source = "api" } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const init = { method, headers: { ...headers }, signal: controller.signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 200) }; }
    }
    if (source) clearProblem(source);
    return { ok: response.ok, status: response.status, data, error: null };
  } catch (err) {
    const timedOut = err && err.name === "AbortError";
    const error = timedOut ? `no answer within ${Math.round(timeoutMs / 1000)} s` : "unreachable";
    if (source) {
      const where = source === "metrics" ? config.metricsUrl : config.apiUrl;
      reportProblem(source, `Cannot reach ${LABELS[source] || source} (${where}): ${error}. Retrying…`);
    }
    return { ok: false, status: 0, data: null, error };
  } finally {
    clearTimeout(timer);
  }
}

export const api = (path, options = {}) => request(config.apiUrl + path, { source: "api", ...options });
export const metrics = (path, options = {}) => request(config.metricsUrl + path, { source: "metrics", ...options });

/** The human-readable reason of a failed call. */
export function describe(result) {
  if (result.status === 0) return result.error || "unreachable";
  const message = result.data && (result.data.message || result.data.reason);
  return message ? `HTTP ${result.status}: ${message}` : `HTTP ${result.status}`;
}
