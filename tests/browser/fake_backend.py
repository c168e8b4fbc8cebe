"""A stand-in backend for working on the dashboard without the local cloud.

    .venv/bin/python tests/browser/fake_backend.py [--port 8700]

serves web/ on http://127.0.0.1:<port>/ with a generated config.json, and a fake API plus a
fake exporter summary on <port+1> (cross-origin, CORS like the real ones). It mimics the public
contract closely enough for layout and interaction work: products, orders (latency gremlin ->
2 s then QUEUED, confirmed a few seconds later), gremlin (admin key "devkey"), health, summary.
POST /_dev/db/<service>/down|up on the API port simulates a stopped database.
With `--proxy` the API port instead forwards to the real local cloud's API (adding CORS
headers), and config.json points the summary at the real exporter.
Not used by the browser tests themselves, which run against the real local cloud.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
SCORECARD = WEB.parent / ".valerix" / "gameday-scorecard.json"
ADMIN_KEY = "devkey"


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.products = {"widget": ["Widget", 100], "gadget": ["Gadget", 50], "gizmo": ["Gizmo", 25],
                         "doohickey": ["Doohickey", 10]}
        self.orders: dict[str, dict] = {}
        self.gremlin: dict = {}
        self.samples: list[tuple[float, float]] = []
        self.db_down: set[str] = set()
        self.counts = {"order": 0, "inventory": 0, "gremlin": 0}
        self.fallbacks = 0
        self.injections = 0

    def sample(self, ms: float) -> None:
        with self.lock:
            self.samples.append((time.time(), ms))

    def summary(self) -> dict:
        now = time.time()
        with self.lock:
            recent = [ms for t, ms in self.samples if t > now - 30]
            series = []
            for k in range(59, -1, -1):
                end = (now // 5) * 5 - k * 5
                win = [ms for t, ms in self.samples if end - 30 < t <= end]
                series.append({"t": int(end), "averageMs": round(sum(win) / len(win), 1) if win else None,
                               "samples": len(win)})
            durations = sorted(ms for _, ms in self.samples)
        pick = lambda q: round(durations[int((len(durations) - 1) * q)], 1) if durations else None  # noqa: E731
        return {
            "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "orderLatency": {"windowSeconds": 30, "averageMs": round(sum(recent) / len(recent), 1) if recent else None,
                             "samples": len(recent), "seriesStepSeconds": 5, "series": series},
            "functions": {s: {"invocations": n, "errors": 0, "p50Ms": pick(.5), "p95Ms": pick(.95), "coldStarts": 1}
                          for s, n in self.counts.items()},
            "lambdas": {f"Valerix-{s}-api" if s != "gremlin" else "Valerix-gremlin": {
                "invocations": n, "memorySizeMb": 512, "maxMemoryUsedMb": 100 + 10 * len(s),
                "memoryUsedPercent": round((100 + 10 * len(s)) / 5.12, 1), "coldStarts": 1, "initLastMs": 240.0,
                "initP50Ms": 240.0, "initMaxMs": 240.0, "p50Ms": pick(.5), "p95Ms": pick(.95),
                "samples": n} for s, n in self.counts.items()},
            "orders": {}, "fallbacks": {"timeout": self.fallbacks} if self.fallbacks else {},
            "gremlinInjections": {"latency": self.injections} if self.injections else {},
            "circuitState": "closed",
            "queues": {"inventory": {"depth": sum(1 for o in self.orders.values() if o["status"] == "QUEUED"), "dlqDepth": 0},
                       "completion": {"depth": 0, "dlqDepth": 0}},
        }


def api_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, doc) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self):
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, X-Api-Key")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}") if n else {}

        def do_GET(self):
            self.route("GET")

        def do_POST(self):
            self.route("POST")

        def do_PUT(self):
            self.route("PUT")

        def do_DELETE(self):
            self.route("DELETE")

        def route(self, method: str) -> None:
            path = self.path.split("?")[0].rstrip("/")
            started = time.time()
            if path == "/api/summary":
                return self._send(200, state.summary())
            if path.startswith("/_dev/db/"):
                _, _, _, service, action = path.split("/")
                (state.db_down.discard if action == "up" else state.db_down.add)(service)
                return self._send(200, {"down": sorted(state.db_down)})
            if path == "/products":
                state.counts["inventory"] += 1
                return self._send(200, {"products": [{"productId": k, "name": v[0], "stock": v[1]}
                                                     for k, v in state.products.items()]})
            if path.startswith("/health/"):
                service = path.rsplit("/", 1)[1]
                down = service in state.db_down
                checks = {"database": {"status": "DOWN", "error": "connection refused (127.0.0.1:5433)"} if down
                          else {"status": "UP", "latencyMs": 2.1},
                          "inventoryQueue": {"status": "UP", "latencyMs": 4.0, "depth": 0}}
                if service == "order":
                    state.sample(15)
                    checks["inventory"] = ({"status": "DOWN", "error": "inventory health answered 503"}
                                           if "inventory" in state.db_down else {"status": "UP", "latencyMs": 20})
                failing = [k for k, c in checks.items() if c["status"] != "UP"]
                body = {"service": service, "status": "DOWN" if failing else "UP", "checks": checks}
                if failing:
                    body["message"] = "unhealthy: " + "; ".join(f"{k}: {checks[k]['error']}" for k in failing)
                return self._send(503 if failing else 200, body)
            if path == "/gremlin":
                state.counts["gremlin"] += 1
                if method != "GET" and self.headers.get("x-api-key") != ADMIN_KEY:
                    return self._send(403, {"message": "Forbidden"})
                if method == "PUT":
                    state.gremlin = self._body()
                elif method == "DELETE":
                    state.gremlin = {}
                doc = {m: {"enabled": False, **state.gremlin.get(m, {})} for m in ("latency", "error", "crash")}
                return self._send(200, doc)
            if path == "/orders" and method == "POST":
                state.counts["order"] += 1
                body = self._body()
                order_id = str(uuid.uuid4())
                product = state.products.get(body.get("productId"))
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ")
                order = {"orderId": order_id, "productId": body.get("productId"), "quantity": body.get("quantity"),
                         "createdAt": now, "updatedAt": now, "reason": None}
                lat = state.gremlin.get("latency", {})
                if lat.get("enabled", False) and lat.get("delayMs", 0) > 0:
                    time.sleep(min(lat["delayMs"], 2000) / 1000)
                    state.fallbacks += 1
                    state.injections += 1
                    order.update(status="QUEUED", reason="inventory did not answer within 2.0 s (timeout)")
                    state.orders[order_id] = order
                    threading.Timer(4.0, lambda: order.update(status="CONFIRMED", reason=None)).start()
                    code = 202
                elif product is None:
                    order.update(status="REJECTED", reason=f"unknown product: {body.get('productId')}")
                    code = 409
                elif product[1] < body.get("quantity", 1):
                    order.update(status="REJECTED", reason="insufficient stock")
                    code = 409
                else:
                    product[1] -= body.get("quantity", 1)
                    order.update(status="CONFIRMED")
                    code = 201
                state.orders[order_id] = order
                state.sample((time.time() - started) * 1000 + 30)
                return self._send(code, order)
            if path.startswith("/orders/"):
                state.sample(12)
                order = state.orders.get(path.rsplit("/", 1)[1])
                return self._send(200, order) if order else self._send(404, {"message": "order not found"})
            return self._send(404, {"message": f"no route {method} {path}"})

    return Handler


def proxy_handler(api_url: str):
    import httpx

    client = httpx.Client(timeout=35.0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_OPTIONS(self):
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key, X-Api-Key")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("content-type", "idempotency-key", "x-api-key")}
            try:
                r = client.request(self.command, api_url + self.path, content=self.rfile.read(n) if n else None,
                                   headers=headers)
                status, body, ctype = r.status_code, r.content, r.headers.get("content-type", "application/json")
            except httpx.HTTPError as exc:
                status, body, ctype = 502, json.dumps({"message": str(exc)}).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = forward

    return Handler


def static_handler(api_base: str, metrics_base: str | None = None):
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/config.json", "/gameday/scorecard.json"):
                if path == "/config.json":
                    body = json.dumps({"apiUrl": api_base, "metricsUrl": metrics_base or api_base}).encode()
                else:  # what `make up` seeds the website bucket with: the latest scorecard, or "none yet"
                    body = SCORECARD.read_bytes() if SCORECARD.exists() else b'{"status": "none"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

    return partial(Handler, directory=str(WEB))


def serve(port: int, proxy: dict | None = None) -> tuple[ThreadingHTTPServer, ThreadingHTTPServer]:
    ThreadingHTTPServer.daemon_threads = True
    if proxy:
        api = ThreadingHTTPServer(("127.0.0.1", port + 1), proxy_handler(proxy["api_url"]))
        web = ThreadingHTTPServer(("127.0.0.1", port), static_handler(f"http://127.0.0.1:{port + 1}", proxy["metrics_url"]))
    else:
        api = ThreadingHTTPServer(("127.0.0.1", port + 1), api_handler(State()))
        web = ThreadingHTTPServer(("127.0.0.1", port), static_handler(f"http://127.0.0.1:{port + 1}"))
    for server in (api, web):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return web, api


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--proxy", action="store_true", help="forward to the local cloud in .valerix/outputs.json")
    args = parser.parse_args()
    outputs = None
    if args.proxy:
        outputs = json.loads((WEB.parent / ".valerix" / "outputs.json").read_text())
    serve(args.port, outputs)
    print(f"dashboard on http://127.0.0.1:{args.port}/ (API + summary on :{args.port + 1}, admin key {ADMIN_KEY})")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
