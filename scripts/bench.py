"""`make bench`: measure the local cloud and print/write the numbers (.valerix/bench.json).

Not a test: it asserts nothing, it measures. Keys:
  happy_p50_ms, happy_p99_ms, happy_rps      POST /orders through the local API Gateway, gremlin off
  baseline_p50_ms, baseline_rps              the same order app served by uvicorn directly, invoking
                                             the reserve handler through a bare Lambda Invoke endpoint
                                             (valerix_localcloud.invoke_emulator), same databases,
                                             same load (the emulation's floor)
  fallback_p99_ms                            inventory latency 5 s on every request
  circuit_open_p99_ms                        with order's circuit open
  completion_p95_ms                          QUEUED -> final status, once the gremlin is off
  happy_rps_ratio, happy_p50_ratio            happy_rps / baseline_rps and happy_p50_ms / baseline_p50_ms
  cold_start_ms                              per function: new process to first response
  aws_init_ms, bundle_mb                     per function: a fresh interpreter (no fork server)
                                             importing + looking up the handler from the AWS bundle,
                                             median of 5 (--init-repeats), CPU time (aws_init_wall_ms: wall time,
                                             which on a shared machine includes waiting for a core;
                                             scripts/aws_init.py; aws_init_bundle says which bundle
                                             and interpreter); the AWS bundle's size
  up_warm_s                                  `make up` with dependencies installed (a redeploy)

Next to the JSON: <name>-report.md (the numbers against their targets, with the charts embedded),
<name>-charts/*.svg (latency over time per phase, first-answer mix, latency CDF of each phase
against the baseline; scripts/report_charts.py) and <name>-report.html showing them. While it
runs it shows the phase, orders done, elapsed time and ETA (scripts/run_progress.py).
"""

from __future__ import annotations

import argparse
import base64
import io
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

from infra.outputs import (
    FUNCTION_NAME_SUFFIX,
    GREMLIN_FUNCTION_NAME,
    INVENTORY_API_FUNCTION_NAME,
    INVENTORY_QUEUE_FUNCTION_NAME,
    INVENTORY_RESERVE_FUNCTION_NAME,
    ORDER_API_FUNCTION_NAME,
    ORDER_COMPLETION_FUNCTION_NAME,
)
from scripts import aws_init, report_charts
from scripts.run_progress import Phase, RunProgress
from valerix_localcloud import cli
from valerix_localcloud.clients import local_client

REPO = Path(__file__).resolve().parents[1]

TARGETS = {
    "happy_p50_ms": ("<=", 40),
    "happy_p99_ms": ("<=", 150),
    "happy_rps": (">=", 100),
    "fallback_p99_ms": ("<=", 2200),
    "circuit_open_p99_ms": ("<=", 150),
    "completion_p95_ms": ("<=", 2000),
    "up_warm_s": ("<=", 60),
    # the local cloud against its floor (issue 18): throughput at least half, median at most double
    "happy_rps_ratio": (">=", 0.5),
    "happy_p50_ratio": ("<=", 2.0),
}
COLD_START_TARGET_MS = 500
AWS_INIT_TARGET_MS = 250  # issue 15: per function, on this machine
PER_FUNCTION = {
    "cold_start_ms": COLD_START_TARGET_MS,
    "aws_init_ms": AWS_INIT_TARGET_MS,
    "aws_init_wall_ms": None,
    "bundle_mb": None,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(
    base_url: str,
    clients: int,
    seconds: float,
    body_for,
    max_requests: int | None = None,
    progress: Phase | None = None,
):
    """`clients` threads POST /orders for `seconds`; returns (latencies_ms, responses, elapsed);
    responses are (unix time of the answer, response), in the order of `latencies_ms`."""
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
                if progress is not None:
                    progress.advance()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, responses, time.monotonic() - started


class Bench:
    def __init__(
        self,
        outputs: dict,
        seconds: float,
        clients: int,
        progress: RunProgress | None = None,
        init_repeats: int = aws_init.DEFAULT_REPEATS,
    ) -> None:
        self.outputs = outputs
        self.init_repeats = init_repeats
        self.api_url = outputs["api_url"]
        self.seconds = seconds
        self.clients = clients
        self.http = httpx.Client(base_url=self.api_url, timeout=30.0)
        self.admin = {"x-api-key": outputs["admin_api_key"]}
        self.results: dict = {}
        # For the charts: every measured request, and the gremlin's switches (unix times).
        self.samples: list[dict] = []
        self.marks: list[dict] = []
        self.progress = progress or RunProgress(stream=io.StringIO(), interactive=False)

    def measured(self, phase: str) -> Phase:
        """A time-bound progress line for a load phase of `self.seconds`-ish."""
        return self.progress.phase(phase, seconds=self.phase_seconds(phase))

    def phase_seconds(self, phase: str) -> float:
        return {"fallback": min(self.seconds, 15), "circuit_open": min(self.seconds, 10)}.get(phase, self.seconds)

    def record(self, phase: str, latencies: list[float], responses: list[tuple[float, httpx.Response]]) -> None:
        for latency, (answered_at, response) in zip(latencies, responses, strict=True):
            self.samples.append(
                {
                    "phase": phase,
                    "sent_at": answered_at - latency / 1000,
                    "latency_ms": latency,
                    "answer": str(response.status_code),
                }
            )

    def product(self, stock: int = 10_000_000) -> str:
        product_id = f"bench-{uuid.uuid4().hex[:8]}"
        self.http.put(
            f"/admin/products/{product_id}", json={"name": "Bench", "stock": stock}, headers=self.admin
        ).raise_for_status()
        return product_id

    def gremlin(self, document: dict | None, phase: str | None = None) -> None:
        if document is None:
            self.http.delete("/gremlin", headers=self.admin).raise_for_status()
        else:
            self.http.put("/gremlin", json=document, headers=self.admin).raise_for_status()
        if phase is not None:
            label = "gremlin off" if document is None else "gremlin " + ", ".join(sorted(document)) + " on"
            self.marks.append({"phase": phase, "at": time.time(), "label": label, "on": document is not None})
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
        with self.measured("happy") as bar:
            latencies, responses, elapsed = load(self.api_url, self.clients, self.seconds, lambda: body, progress=bar)
        self.record("happy", latencies, responses)
        statuses = [r.status_code for _, r in responses]
        self.results.update(
            {
                "happy_p50_ms": round(pct(latencies, 0.5), 1),
                "happy_p99_ms": round(pct(latencies, 0.99), 1),
                "happy_rps": round(len(latencies) / elapsed, 1),
                "happy_requests": len(latencies),
                "happy_confirmed_share": round(statuses.count(201) / max(1, len(statuses)), 3),
            }
        )

    def baseline(self) -> None:
        lam = local_client("lambda", self.outputs["endpoint_url"])
        stack = self.outputs["stack"]

        def env_of(output: str) -> dict:
            config = lam.get_function_configuration(FunctionName=stack[output])
            env = dict(os.environ)
            env.update(config.get("Environment", {}).get("Variables", {}))
            env.update(
                {
                    "AWS_ENDPOINT_URL": self.outputs["endpoint_url"],
                    "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": self.outputs["region"],
                    "AWS_REGION": self.outputs["region"],
                }
            )
            return env

        reserve_port, order_port = free_port(), free_port()
        reserve_env = env_of(INVENTORY_RESERVE_FUNCTION_NAME)
        order_env = env_of(ORDER_API_FUNCTION_NAME)
        # Order invokes the reserve function through the Lambda API: here the shared emulator
        # serves that API with the handler in its own process, no LocalStack in between.
        order_env["AWS_ENDPOINT_URL_LAMBDA"] = f"http://127.0.0.1:{reserve_port}"
        reserve_name = order_env["INVENTORY_RESERVE_FUNCTION"]
        commands = [
            (
                [
                    sys.executable,
                    "-m",
                    "valerix_localcloud.invoke_emulator",
                    "--port",
                    str(reserve_port),
                    "--function",
                    f"{reserve_name}=functions.inventory.handler:reserve_handler",
                ],
                reserve_env,
            ),
            (
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "functions.order.app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(order_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                order_env,
            ),
        ]
        servers = []
        try:
            for command, env in commands:
                servers.append(
                    subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            wait_port(reserve_port, 30)
            cli.wait_http(f"http://127.0.0.1:{order_port}/orders?limit=1", 30)
            # The floor must really be served by the emulator: a ping through it answers UP.
            ping = httpx.post(
                f"http://127.0.0.1:{reserve_port}/2015-03-31/functions/{reserve_name}/invocations",
                json={"action": "ping"},
                timeout=10,
            )
            if ping.status_code != 200 or ping.headers.get("x-amz-function-error") or ping.json() != {"status": "UP"}:
                raise RuntimeError(f"the baseline's reserve emulator answered {ping.status_code}: {ping.text[:300]}")
            base = f"http://127.0.0.1:{order_port}"
            body = {"productId": self.product(), "quantity": 1}
            load(base, self.clients, 3, lambda: body)
            with self.measured("baseline") as bar:
                latencies, responses, elapsed = load(base, self.clients, self.seconds, lambda: body, progress=bar)
            self.record("baseline", latencies, responses)
            statuses = [r.status_code for _, r in responses]
            self.results.update(
                {
                    "baseline_p50_ms": round(pct(latencies, 0.5), 1),
                    "baseline_p99_ms": round(pct(latencies, 0.99), 1),
                    "baseline_rps": round(len(latencies) / elapsed, 1),
                    "baseline_confirmed_share": round(statuses.count(201) / max(1, len(statuses)), 3),
                }
            )
            self.ratios()
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)

    def ratios(self) -> None:
        """The local cloud against its floor, both measured in this run (happy runs first)."""
        r = self.results
        if r.get("happy_rps") and r.get("baseline_rps"):
            r["happy_rps_ratio"] = round(r["happy_rps"] / r["baseline_rps"], 2)
        if r.get("happy_p50_ms") and r.get("baseline_p50_ms"):
            r["happy_p50_ratio"] = round(r["happy_p50_ms"] / r["baseline_p50_ms"], 2)

    def fallback_and_completion(self) -> None:
        self.wait_circuit_closed()
        product = self.product()
        body = {"productId": product, "quantity": 1}
        self.gremlin({"latency": {"enabled": True, "delayMs": 5000, "every": 1}}, "fallback")
        with self.measured("fallback") as bar:
            latencies, responses, _ = load(
                self.api_url, self.clients, self.phase_seconds("fallback"), lambda: body, progress=bar
            )
        self.record("fallback", latencies, responses)
        self.gremlin(None, "fallback")
        switched_off = time.time()
        self.results["fallback_p99_ms"] = round(pct(latencies, 0.99), 1)
        self.results["fallback_p50_ms"] = round(pct(latencies, 0.5), 1)
        queued = [(t, r.json()["orderId"]) for t, r in responses if r.status_code == 202]
        completion: dict[str, float] = {}
        deadline = time.monotonic() + 180
        pending = {order_id: t for t, order_id in queued}
        bar = self.progress.phase("completion", total=len(pending), unit="final")
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
                    bar.advance()
            time.sleep(0.5)
        bar.finish()
        self.results["completion_p95_ms"] = round(pct(list(completion.values()), 0.95), 1)
        self.results["completion_orders"] = len(completion)

    def circuit_open(self) -> None:
        product = self.product()
        body = {"productId": product, "quantity": 1}
        self.gremlin({"error": {"enabled": True, "statusCode": 503, "every": 1}}, "circuit_open")
        deadline = time.monotonic() + 60
        while self.circuit_state() != "open" and time.monotonic() < deadline:
            self.http.post("/orders", json=body)
        with self.measured("circuit_open") as bar:
            latencies, responses, _ = load(
                self.api_url, self.clients, self.phase_seconds("circuit_open"), lambda: body, progress=bar
            )
        self.record("circuit_open", latencies, responses)
        reasons = [r.json().get("reason") for _, r in responses]
        self.results["circuit_open_p99_ms"] = round(pct(latencies, 0.99), 1)
        self.results["circuit_open_p50_ms"] = round(pct(latencies, 0.5), 1)
        self.results["circuit_open_share"] = round(reasons.count("circuit open") / max(1, len(reasons)), 3)
        self.gremlin(None, "circuit_open")

    def cold_starts(self) -> None:
        lam = local_client("lambda", self.outputs["endpoint_url"], read_timeout=120)
        stack = self.outputs["stack"]
        events = {
            ORDER_API_FUNCTION_NAME: api_event("GET", "/orders", {"limit": "1"}),
            INVENTORY_API_FUNCTION_NAME: api_event("GET", "/products"),
            GREMLIN_FUNCTION_NAME: api_event("GET", "/gremlin"),
            ORDER_COMPLETION_FUNCTION_NAME: {"Records": []},
            INVENTORY_QUEUE_FUNCTION_NAME: {"Records": []},
        }
        cold = {}
        bar = self.progress.phase("cold starts", total=len(events), unit="functions")
        for output, event in events.items():
            name = stack[output]
            config = lam.get_function_configuration(FunctionName=name)
            variables = dict(config.get("Environment", {}).get("Variables", {}))
            # A configuration change retires the warm environments: the next invoke is cold.
            lam.update_function_configuration(
                FunctionName=name, Environment={"Variables": {**variables, "VALERIX_BENCH_NONCE": uuid.uuid4().hex}}
            )
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
            tail = base64.b64decode(response.get("LogResult", "")).decode(errors="replace")
            init = re.search(r"Init Duration: ([0-9.]+) ms", tail)
            duration = re.search(r"\tDuration: ([0-9.]+) ms", tail)
            if init and duration:
                cold[config["FunctionName"]] = round(float(init.group(1)) + float(duration.group(1)), 1)
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            bar.advance()
        bar.finish()
        self.results["cold_start_ms"] = cold

    def aws_init(self) -> None:
        """AWS-realistic INIT per function (scripts/aws_init.py): a fresh interpreter imports the
        handler from the AWS bundle with the function's deployed variables, median of 5."""
        lam = local_client("lambda", self.outputs["endpoint_url"])
        functions = {}
        for output, name in sorted(self.outputs["stack"].items()):
            if output.endswith(FUNCTION_NAME_SUFFIX):
                config = lam.get_function_configuration(FunctionName=name)
                functions[name] = (config["Handler"], config.get("Environment", {}).get("Variables", {}))
        bundle = aws_init.bundle_for()
        aws_bundle, _ = aws_init.bundling.stage_function_bundle("aws")
        bar = self.progress.phase("aws init", total=len(functions), unit="functions")
        measured = {}
        for name, spec in functions.items():
            measured.update(aws_init.measure(bundle, {name: spec}, repeats=self.init_repeats))
            bar.advance()
        bar.finish()
        size = aws_init.bundle_mb(aws_bundle)  # one code asset, shared by every function
        # CPU time: what INIT costs uncontended; the wall time on this shared machine includes
        # waiting for a core (both medians of 5)
        self.results["aws_init_ms"] = {name: m["cpu_ms"] for name, m in measured.items()}
        self.results["aws_init_wall_ms"] = {name: m["wall_ms"] for name, m in measured.items()}
        self.results["aws_init_bundle"] = bundle.note
        self.results["bundle_mb"] = dict.fromkeys(functions, size)

    def up_warm(self) -> None:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "valerix_localcloud", "up"], cwd=REPO, capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            self.results["up_warm_s"] = round(time.monotonic() - started, 1)
        else:
            self.results["up_warm_s"] = None
            print(result.stdout[-2000:], result.stderr[-2000:])


def api_event(method: str, path: str, query: dict | None = None) -> dict:
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"accept": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "stage": "prod",
            "requestId": uuid.uuid4().hex,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.1)


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
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def verdict(key: str, value) -> str:
    if key in TARGETS and isinstance(value, (int, float)):
        op, target = TARGETS[key]
        ok = value <= target if op == "<=" else value >= target
        return f"{op} {target}: {'ok' if ok else 'MISSED'}"
    return ""


def write_report(results: dict, samples: list[dict], marks: list[dict], started_at: float, out: Path) -> Path:
    """<out stem>-report.md with the numbers and the charts drawn from this run's requests,
    the SVGs in <out stem>-charts/, and <out stem>-report.html showing them."""
    report_md = out.with_name(f"{out.stem}-report.md")
    chart_samples = [
        report_charts.Sample(s["phase"], s["sent_at"] - started_at, s["latency_ms"], s["answer"]) for s in samples
    ]
    chart_marks = [report_charts.Mark(m["phase"], m["at"] - started_at, m["label"], m["on"]) for m in marks]
    charts = report_charts.write_charts(chart_samples, chart_marks, report_md, baseline="baseline")
    rows = []
    for key, value in results.items():
        if key in ("machine", "measured_at"):
            continue
        if key in PER_FUNCTION and isinstance(value, dict):
            target = PER_FUNCTION[key]
            for name, number in value.items():
                rows.append(
                    (
                        f"{key}[{name}]",
                        str(number),
                        "" if target is None else f"<= {target}: {'ok' if number <= target else 'MISSED'}",
                    )
                )
            continue
        rows.append((key, str(value), verdict(key, value)))
    machine_line = ", ".join(f"{k} {v}" for k, v in results.get("machine", {}).items())
    page = report_md.with_suffix(".html")
    report_charts.write_html(
        page,
        "Valerix bench report",
        charts,
        [(key, f"{value}  ({target})" if target else value) for key, value, target in rows],
        started_at,
    )
    lines = [
        "# Valerix bench report",
        "",
        f"Measured {results.get('measured_at', '')}, {results.get('clients')} clients, "
        f"{results.get('seconds')} s per load phase. Machine: {machine_line}.",
        "",
        "| key | value | target |",
        "|---|---|---|",
        *[f"| `{key}` | {value} | {target} |" for key, value, target in rows],
        "",
        *report_charts.markdown_lines(charts, page),
    ]
    report_md.write_text("\n".join(lines) + "\n")
    return report_md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="duration of each load phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated phases to skip")
    parser.add_argument("--out", type=Path, default=cli.STATE / "bench.json", help="where to write the results")
    parser.add_argument(
        "--init-repeats",
        type=int,
        default=aws_init.DEFAULT_REPEATS,
        help="fresh interpreters per function in the aws_init phase (the median is reported)",
    )
    args = parser.parse_args(argv)
    if not (cli.OUTPUTS_FILE.exists() and cli.localstack().pid()) and cli.main(["up"]) != 0:
        return 2
    skip = set(filter(None, args.skip.split(",")))
    phases = ["up_warm", "happy", "baseline", "circuit_open", "fallback_and_completion", "cold_starts", "aws_init"]
    outputs = json.loads(cli.OUTPUTS_FILE.read_text())
    run_started = time.time()
    with RunProgress() as progress:
        bench = Bench(outputs, args.seconds, args.clients, progress, init_repeats=args.init_repeats)
        for phase in phases:
            if phase in skip:
                continue
            progress.write(f"==> {phase}")
            started = time.monotonic()
            getattr(bench, phase)()
            if phase == "up_warm":  # a redeploy may change nothing, but re-read to be sure
                bench.outputs = json.loads(cli.OUTPUTS_FILE.read_text())
            progress.write(f"    done in {time.monotonic() - started:.1f}s")
    results = {
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "clients": args.clients,
        "seconds": args.seconds,
        **bench.results,
    }
    args.out.write_text(json.dumps(results, indent=2))
    report_md = write_report(results, bench.samples, bench.marks, run_started, args.out)
    print()
    for key, value in results.items():
        if key in ("machine",):
            continue
        verdict = ""
        if key in TARGETS and isinstance(value, (int, float)):
            op, target = TARGETS[key]
            ok = value <= target if op == "<=" else value >= target
            verdict = f"  (target {op} {target}: {'ok' if ok else 'MISSED'})"
        if key in PER_FUNCTION and isinstance(value, dict):
            limit = PER_FUNCTION[key]
            for name, number in value.items():
                print(
                    f"  {key}[{name}] = {number}"
                    + ("" if limit is None else f"  (target <= {limit}: {'ok' if number <= limit else 'MISSED'})")
                )
            continue
        print(f"  {key} = {value}{verdict}")
    print(
        f"written to {args.out}; report with charts: {report_md} ({report_md.with_suffix('.html').name} "
        f"shows them in a browser)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
