// Product picker, "place normal order", and the live order list (kept in localStorage).
// Only orders that are still open (QUEUED) are polled, each with GET /orders/{id}.

import { api, describe } from "./api.js";
import { $, announce, every, fmtTime, h } from "./ui.js";

const STORAGE_KEY = "valerix.orders";
const MAX_ORDERS = 50;
const TICK_MS = 1000;
// Seconds between polls of one open order: quick at first, then every 5 s. Every poll is an
// order-service request and counts in its average latency, so the dashboard stays frugal.
const BACKOFF_MS = [2000, 3000, 4000, 5000];
const OPEN = new Set(["QUEUED", "PENDING"]);

let orders = loadOrders();
let products = [];
let poller = null;

function loadOrders() {
  try {
    const parsed = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(parsed) ? parsed.filter((o) => o && typeof o.orderId === "string") : [];
  } catch {
    return [];
  }
}

function saveOrders() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(orders.slice(0, MAX_ORDERS)));
  } catch {
    /* storage full or disabled: the list still works for this page view */
  }
}

export const isOpen = (order) => OPEN.has(order.status);
export const openOrders = () => orders.filter(isOpen);

// ---- products ---------------------------------------------------------------------------
export async function loadProducts() {
  const result = await api("/products");
  const select = $("#product");
  if (!result.ok || !result.data || !Array.isArray(result.data.products)) {
    if (!products.length) {
      select.replaceChildren(h("option", { value: "" }, "products unavailable"));
    }
    $("#order-feedback").textContent = `Could not load products (${describe(result)}).`;
    return false;
  }
  const previous = select.value;
  products = result.data.products;
  select.replaceChildren(...products.map((p) =>
    h("option", { value: p.productId }, `${p.name || p.productId} (${p.stock} in stock)`)));
  if (previous && products.some((p) => p.productId === previous)) select.value = previous;
  else if (products.some((p) => p.productId === "widget")) select.value = "widget";
  if ($("#order-feedback").textContent.startsWith("Could not load products")) $("#order-feedback").textContent = "";
  return true;
}

export const productList = () => products;

// ---- placing orders ---------------------------------------------------------------------
function newKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `k-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

// A 503 (nothing stored, or every order function busy) and API Gateway's 429 (throttled before
// the function ran) ask for a retry, and a lost answer (timeout, network) may hide an order that
// was stored: either way the same Idempotency-Key makes a retry safe (it returns the order the
// first attempt created, never a second one), so the dashboard retries with the same key.
const RETRY_DELAYS_MS = [500, 1500];
const RETRY_STATUSES = [0, 429, 503];

/** POST /orders; adds the answer to the list. Resolves to the stored order or an {error}. */
export async function placeOrder(productId, quantity) {
  const key = newKey();
  let result;
  for (let attempt = 0; ; attempt += 1) {
    result = await api("/orders", {
      method: "POST",
      body: { productId, quantity },
      headers: { "Idempotency-Key": key },
      timeoutMs: 30000,
    });
    if (!RETRY_STATUSES.includes(result.status) || attempt >= RETRY_DELAYS_MS.length) break;
    await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
  }
  const data = result.data || {};
  if (![201, 202, 409].includes(result.status) || !data.orderId) {
    return { error: describe(result) };
  }
  const now = new Date().toISOString();
  const order = {
    orderId: data.orderId,
    productId: data.productId || productId,
    quantity: data.quantity || quantity,
    status: data.status || { 201: "CONFIRMED", 202: "QUEUED", 409: "REJECTED" }[result.status],
    reason: data.reason || null,
    path: result.status === 202 ? "queued" : "sync",
    firstStatus: result.status,
    createdAt: data.createdAt || now,
    updatedAt: data.updatedAt || now,
    polls: 0,
    nextPollAt: Date.now() + BACKOFF_MS[0],
  };
  orders = [order, ...orders.filter((o) => o.orderId !== order.orderId)].slice(0, MAX_ORDERS);
  saveOrders();
  render();
  announce(`Order ${short(order.orderId)} ${order.status}${order.reason ? `: ${order.reason}` : ""}`);
  return order;
}

async function onSubmit(event) {
  event.preventDefault();
  const feedback = $("#order-feedback");
  const productId = $("#product").value;
  const quantity = Number($("#quantity").value);
  if (!productId) { feedback.textContent = "Pick a product first."; return; }
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > 1000) {
    feedback.textContent = "Quantity must be a whole number from 1 to 1000.";
    $("#quantity").focus();
    return;
  }
  const button = $("#place-order");
  button.disabled = true;
  feedback.textContent = "Placing order…";
  try {
    const order = await placeOrder(productId, quantity);
    feedback.textContent = order.error
      ? `Order not placed: ${order.error}`
      : `Order ${short(order.orderId)}: ${order.status} (${order.path}).`;
    loadProducts();
  } finally {
    button.disabled = false;
  }
}

// ---- polling open orders ------------------------------------------------------------------
async function pollOpenOrders() {
  const now = Date.now();
  const open = openOrders().filter((o) => !o.nextPollAt || o.nextPollAt <= now);
  if (!open.length) return;
  for (const o of open) {
    o.polls = (o.polls || 0) + 1;
    o.nextPollAt = now + BACKOFF_MS[Math.min(o.polls, BACKOFF_MS.length - 1)];
  }
  const results = await Promise.all(open.map((o) => api(`/orders/${encodeURIComponent(o.orderId)}`)));
  let changed = false;
  results.forEach((result, i) => {
    const order = open[i];
    if (result.ok && result.data && result.data.status) {
      if (result.data.status !== order.status || result.data.reason !== order.reason) {
        order.status = result.data.status;
        order.reason = result.data.reason || null;
        order.updatedAt = result.data.updatedAt || new Date().toISOString();
        changed = true;
        if (!isOpen(order)) announce(`Order ${short(order.orderId)} ${order.status}${order.reason ? `: ${order.reason}` : ""}`);
      }
    } else if (result.status === 404) {
      order.status = "UNKNOWN";
      order.reason = "the API no longer knows this order";
      changed = true;
    }
  });
  if (changed) {
    saveOrders();
    render();
    if (results.some((_, i) => !isOpen(open[i]))) loadProducts();
  }
}

// ---- rendering ----------------------------------------------------------------------------
const short = (id) => (id.length > 13 ? `${id.slice(0, 8)}…` : id);

function productName(productId) {
  const p = products.find((x) => x.productId === productId);
  return p && p.name ? p.name : productId;
}

function render() {
  const list = $("#order-list");
  $("#orders-empty").hidden = orders.length > 0;
  list.replaceChildren(...orders.map((o) => {
    const pathText = o.path === "queued" ? "queued path" : "sync path";
    return h("li", { class: "order", dataset: { orderId: o.orderId, status: o.status, path: o.path } },
      h("span", { class: `badge badge-${o.status.toLowerCase()}`, dataset: { status: o.status } }, o.status),
      h("span", { class: "order-main" },
        h("span", { class: "order-what" }, `${o.quantity} × ${productName(o.productId)}`),
        h("span", { class: "order-meta" },
          h("span", { class: "path", title: `first answer HTTP ${o.firstStatus}` }, pathText),
          " · ",
          h("time", { datetime: o.createdAt }, fmtTime(o.createdAt)),
          " · ",
          h("code", { class: "order-id", title: o.orderId }, short(o.orderId))),
        o.reason ? h("span", { class: "reason" }, o.reason) : null));
  }));
}

export function initOrders() {
  $("#order-form").addEventListener("submit", onSubmit);
  $("#clear-orders").addEventListener("click", () => {
    orders = [];
    saveOrders();
    render();
    announce("Order list cleared");
  });
  window.addEventListener("storage", (event) => {
    if (event.key === STORAGE_KEY) { orders = loadOrders(); render(); }
  });
  render();
  poller = every(TICK_MS, pollOpenOrders);
  every(15000, loadProducts);
}
