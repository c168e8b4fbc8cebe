"""`make bench`: measure the local cloud and print/write the numbers (.valerix/bench.json).

Not a test: it asserts nothing, it measures. Keys:
  happy_p50_ms, happy_p99_ms, happy_rps      POST /orders through the local API Gateway, gremlin off
  baseline_p50_ms, baseline_rps              the same two FastAPI apps served by uvicorn directly,
                                             same databases, same load (the emulation's floor)
  fallback_p99_ms                            inventory latency 5 s on every request
  circuit_open_p99_ms                        with order's circuit open
  completion_p95_ms                          QUEUED -> final status, once the gremlin is off
  cold_start_ms                              per function: new process to first response
  up_warm_s                                  `make up` with dependencies installed (a redeploy)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "localcloud"))

from valerix_localcloud import cli  # noqa: E402
from valerix_localcloud.clients import local_client  # noqa: E402

TARGETS = {
    "happy_p50_ms": ("<=", 40), "happy_p99_ms": ("<=", 150), "happy_rps": (">=", 100),
    "fallback_p99_ms": ("<=", 2200), "circuit_open_p99_ms": ("<=", 100),
    "completion_p95_ms": ("<=", 3000), "up_warm_s": ("<=", 60),
}
COLD_START_TARGET_MS = 500


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load(base_url: str, clients: int, seconds: float, body_for, max_requests: int | None = None):
    """`clients` threads POST /orders for `seconds`; returns (latencies_ms, responses, elapsed)."""
    latencies: list[float] = []
    responses: list[tuple[float, httpx.Response]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    count = [0]

    def worker():
        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if max_requests is not None and count[0] >= max_requests:
                        return
                    count[0] += 1
                started = time.monotonic()
                try:
                    response = http.post("/orders", json=body_for())
                except httpx.HTTPError:
                    continue
                elapsed = (time.monotonic() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    responses.append((time.time(), response))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, responses, time.monotonic() - started


class Bench:
    def __init__(self, outputs: dict, seconds: float, clients: int) -> None:
        self.outputs = outputs
        self.api_url = outputs["api_url"]
        self.seconds = seconds
        self.clients = clients
        self.http = httpx.Client(base_url=self.api_url, timeout=30.0)
        self.admin = {"x-api-key": outputs["admin_api_key"]}
        self.results: dict = {}

    def product(self, stock: int = 10_000_000) -> str:
        product_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.http.put(f"/admin/products/{product_id}", json={"name": "Bench", "stock": stock},
                      headers=self.admin).raise_for_status()
        return product_id

    def gremlin(self, document: dict | None) -> None:
        if document is None:
            self.http.delete("/gremlin", headers=self.admin).raise_for_status()
        else:
            self.http.put("/gremlin", json=document, headers=self.admin).raise_for_status()
        time.sleep(2.2)

    def circuit_state(self) -> str:
        return str(self.http.get("/health/order").json().get("circuitState", "")).lower()

    def wait_circuit_closed(self, timeout: float = 90) -> None:
        product = self.product()
        deadline = time.monotonic() + timeout
        while self.circuit_state() != "closed" and time.monotonic() < deadline:
            self.http.post("/orders", json={"productId": product, "quantity": 1})
            time.sleep(1)

    # --- measurements --------------------------------------------------------------

    def happy(self) -> None:
        self.gremlin(None)
        self.wait_circuit_closed()
        product = self.product()
        body = {"productId": product, "quantity": 1}
        load(self.api_url, self.clients, 3, lambda: body)  # warm every environment
        latencies, responses, elapsed = load(self.api_url, self.clients, self.seconds, lambda: body)
        statuses = [r.status_code for _, r in responses]
        self.results.update({
            "happy_p50_ms": round(pct(latencies, 0.5), 1),
            "happy_p99_ms": round(pct(latencies, 0.99), 1),
            "happy_rps": round(len(latencies) / elapsed, 1),
            "happy_requests": len(latencies),
            "happy_confirmed_share": round(statuses.count(201) / max(1, len(statuses)), 3),
        })

    def baseline(self) -> None:
        lam = local_client("lambda", self.outputs["endpoint_url"])
        stack = self.outputs["stack"]

        def env_of(output: str) -> dict:
            config = lam.get_function_configuration(FunctionName=stack[output])
            env = dict(os.environ)
            env.update(config.get("Environment", {}).get("Variables", {}))
            env.update({"AWS_ENDPOINT_URL": self.outputs["endpoint_url"], "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": self.outputs["region"],
                        "AWS_REGION": self.outputs["region"], "PYTHONPATH": str(REPO)})
            return env

        inventory_port, order_port = free_port(), free_port()
        inventory_env = env_of("InventoryApiFunctionName")
        order_env = env_of("OrderApiFunctionName")
        order_env["INVENTORY_API_URL"] = f"http://127.0.0.1:{inventory_port}"
        servers = []
        try:
            for module, port, env in (("functions.inventory.app:app", inventory_port, inventory_env),
                                      ("functions.order.app:app", order_port, order_env)):
                servers.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(port),
                     "--log-level", "warning", "--no-access-log"],
                    cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for port in (inventory_port, order_port):
                cli.wait_http(f"http://127.0.0.1:{port}/products" if port == inventory_port
                              else f"http://127.0.0.1:{port}/orders?limit=1", 30)
            base = f"http://127.0.0.1:{order_port}"
            body = {"productId": self.product(), "quantity": 1}
            load(base, self.clients, 3, lambda: body)
            latencies, responses, elapsed = load(base, self.clients, self.seconds, lambda: body)
            self.results.update({
                "baseline_p50_ms": round(pct(latencies, 0.5), 1),
                "baseline_p99_ms": round(pct(latencies, 0.99), 1),
                "baseline_rps": round(len(latencies) / elapsed, 1),
            })
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)

    def fallback_and_completion(self) -> None:
        self.wait_circuit_closed()
        product = self.product()
        body = {"productId": product, "quantity": 1}
        self.gremlin({"latency": {"enabled": True, "delayMs": 5000, "every": 1}})
        latencies, responses, _ = load(self.api_url, self.clients, min(self.seconds, 15), lambda: body)
        self.gremlin(None)
        switched_off = time.time()
        self.results["fallback_p99_ms"] = round(pct(latencies, 0.99), 1)
        self.results["fallback_p50_ms"] = round(pct(latencies, 0.5), 1)
        queued = [(t, r.json()["orderId"]) for t, r in responses if r.status_code == 202]
        completion: dict[str, float] = {}
        deadline = time.monotonic() + 180
        pending = dict((order_id, t) for t, order_id in queued)
        while pending and time.monotonic() < deadline:
            # One list request per round, not one GET per pending order: polling hundreds of
            # orders one by one loads the local cloud that is draining the queue being measured.
            # The final time is the order's own updatedAt, so the polling rate does not bias it.
            newest = self.http.get("/orders", params={"limit": 1000}).json()["orders"]
            listed = {order["orderId"]: order for order in newest}
            for order_id, answered_at in list(pending.items()):
                order = listed.get(order_id) or self.http.get(f"/orders/{order_id}").json()
                if order.get("status") in ("CONFIRMED", "REJECTED"):
                    final_at = datetime.fromisoformat(order["updatedAt"].replace("Z", "+00:00")).timestamp()
                    # From the QUEUED answer (or the switch-off, if later) to the final status.
                    completion[order_id] = max(0.0, final_at - max(answered_at, switched_off)) * 1000
                    del pending[order_id]
            time.sleep(0.5)
        self.results["completion_p95_ms"] = round(pct(list(completion.values()), 0.95), 1)
        self.results["completion_orders"] = len(completion)

    def circuit_open(self) -> None:
        product = self.product()
        body = {"productId": product, "quantity": 1}
        self.gremlin({"error": {"enabled": True, "statusCode": 503, "every": 1}})
        deadline = time.monotonic() + 60
        while self.circuit_state() != "open" and time.monotonic() < deadline:
            self.http.post("/orders", json=body)
        latencies, responses, _ = load(self.api_url, self.clients, min(self.seconds, 10), lambda: body)
        reasons = [r.json().get("reason") for _, r in responses]
        self.results["circuit_open_p99_ms"] = round(pct(latencies, 0.99), 1)
        self.results["circuit_open_p50_ms"] = round(pct(latencies, 0.5), 1)
        self.results["circuit_open_share"] = round(reasons.count("circuit open") / max(1, len(reasons)), 3)
        self.gremlin(None)

    def cold_starts(self) -> None:
        lam = local_client("lambda", self.outputs["endpoint_url"], read_timeout=120)
        stack = self.outputs["stack"]
        events = {
            "OrderApiFunctionName": api_event("GET", "/orders", {"limit": "1"}),
            "InventoryApiFunctionName": api_event("GET", "/products"),
            "GremlinFunctionName": api_event("GET", "/gremlin"),
            "OrderCompletionFunctionName": {"Records": []},
            "InventoryQueueFunctionName": {"Records": []},
        }
        cold = {}
        for output, event in events.items():
            name = stack[output]
            config = lam.get_function_configuration(FunctionName=name)
            variables = dict(config.get("Environment", {}).get("Variables", {}))
            # A configuration change retires the warm environments: the next invoke is cold.
            lam.update_function_configuration(FunctionName=name, Environment={
                "Variables": {**variables, "VALERIX_BENCH_NONCE": uuid.uuid4().hex}})
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
            tail = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
            init = re.search(r"Init Duration: ([0-9.]+) ms", tail)
            duration = re.search(r"\tDuration: ([0-9.]+) ms", tail)
            if init and duration:
                cold[config["FunctionName"]] = round(float(init.group(1)) + float(duration.group(1)), 1)
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        self.results["cold_start_ms"] = cold

    def up_warm(self) -> None:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "valerix_localcloud", "up"], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO / "localcloud")},
                                capture_output=True, text=True)
        if result.returncode == 0:
            self.results["up_warm_s"] = round(time.monotonic() - started, 1)
        else:
            self.results["up_warm_s"] = None
            print(result.stdout[-2000:], result.stderr[-2000:])


def api_event(method: str, path: str, query: dict | None = None) -> dict:
    return {"resource": path, "path": path, "httpMethod": method, "headers": {"accept": "application/json"},
            "multiValueHeaders": {}, "queryStringParameters": query, "multiValueQueryStringParameters":
            {k: [v] for k, v in (query or {}).items()} or None, "pathParameters": None,
            "requestContext": {"resourcePath": path, "httpMethod": method, "stage": "prod",
                               "requestId": uuid.uuid4().hex, "identity": {"sourceIp": "127.0.0.1"}},
            "body": None, "isBase64Encoded": False}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory_gib, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="duration of each load phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated phases to skip")
    parser.add_argument("--out", type=Path, default=cli.STATE / "bench.json", help="where to write the results")
    args = parser.parse_args(argv)
    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()):
        if cli.main(["up"]) != 0:
            return 2
    skip = set(filter(None, args.skip.split(",")))
    phases = ["up_warm", "happy", "baseline", "circuit_open", "fallback_and_completion", "cold_starts"]
    outputs = json.loads(cli.OUTPUTS_FILE.read_text())
    bench = Bench(outputs, args.seconds, args.clients)
    for phase in phases:
        if phase in skip:
            continue
        print(f"==> {phase}", flush=True)
        started = time.monotonic()
        getattr(bench, phase)()
        if phase == "up_warm":  # a redeploy may change nothing, but re-read to be sure
            bench.outputs = json.loads(cli.OUTPUTS_FILE.read_text())
        print(f"    done in {time.monotonic() - started:.1f}s", flush=True)
    results = {"measured_at": datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "clients": args.clients, "seconds": args.seconds, **bench.results}
    args.out.write_text(json.dumps(results, indent=2))
    print()
    for key, value in results.items():
        if key in ("machine",):
            continue
        verdict = ""
        if key in TARGETS and isinstance(value, (int, float)):
            op, target = TARGETS[key]
            ok = value <= target if op == "<=" else value >= target
            verdict = f"  (target {op} {target}: {'ok' if ok else 'MISSED'})"
        if key == "cold_start_ms":
            for name, ms in value.items():
                print(f"  cold_start_ms[{name}] = {ms}  (target <= {COLD_START_TARGET_MS}: "
                      f"{'ok' if ms <= COLD_START_TARGET_MS else 'MISSED'})")
            continue
        print(f"  {key} = {value}{verdict}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
