"""The exporter: poll loop, atomic state snapshots, HTTP endpoints."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from .collector import make_registry
from .emf import parse_message
from .lambda_report import function_of
from .sources import LogFollower, QueuePoller
from .store import DEFAULT_BUCKETS, MetricStore, build_summary

log = logging.getLogger("valerix_exporter")
STATE_VERSION = 1


@dataclass
class Config:
    endpoint_url: str | None = None
    region: str | None = None
    log_group_prefixes: list[str] = field(default_factory=lambda: ["/aws/lambda/"])
    log_groups: list[str] = field(default_factory=list)
    queue_urls: dict[str, str] = field(default_factory=dict)
    # Loopback unless asked otherwise: the local cloud's exporter is for this machine only.
    host: str = "127.0.0.1"
    port: int = 9108
    # Browser origins allowed to read the exporter (the dashboard's); none = no CORS header at all.
    cors_origins: list[str] = field(default_factory=list)
    state_dir: str = ".valerix/exporter"
    poll_interval: float = 1.0
    overlap_seconds: float = 60.0
    recent_overlap_seconds: float = 2.0
    deep_poll_seconds: float = 10.0
    discover_seconds: float = 30.0
    idle_poll_seconds: float = 3.0
    initial_lookback_seconds: float = 0.0
    namespaces: list[str] = field(default_factory=lambda: ["Valerix"])  # ["*"] = all
    buckets: tuple = DEFAULT_BUCKETS
    latency_window_seconds: int = 30


def make_session(endpoint_url: str | None, region: str | None):
    """boto3 session from the default credential chain; any credentials for a local endpoint."""
    import boto3

    session = boto3.session.Session()
    region = region or session.region_name or "us-east-1"
    if endpoint_url and session.get_credentials() is None:
        # LocalStack / moto accept any credentials; don't require the caller to invent some.
        return boto3.session.Session(
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 -- the emulators' fixed dummy
            region_name=region,
        )
    return boto3.session.Session(region_name=region)


_LABEL = "[A-Za-z0-9-]+"


def origin_matcher(patterns: list[str]):
    """`origin -> bool` for exact origins (`http://host:port`); `*` in a pattern stands for one
    DNS label (`http://*.s3-website.localhost.localstack.cloud:4566`), never for a dot, a colon
    or a whole scheme, so `*` alone matches no origin: this exporter never allows every site."""
    compiled = []
    for pattern in (p.strip().rstrip("/") for p in patterns):
        scheme, sep, rest = pattern.partition("://")
        if not sep or not re.fullmatch(r"https?", scheme, re.IGNORECASE) or not rest:
            if pattern:
                log.warning("ignoring CORS origin %r: an origin looks like http(s)://host[:port]", pattern)
            continue
        compiled.append(
            re.compile(
                re.escape(f"{scheme}://")
                + "".join(_LABEL if part == "*" else re.escape(part) for part in re.split(r"(\*)", rest)),
                re.IGNORECASE,
            )
        )

    def allowed(origin: str | None) -> bool:
        return bool(origin) and any(regex.fullmatch(origin) for regex in compiled)

    return allowed


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Exporter:
    def __init__(self, config: Config, session=None):
        from botocore.config import Config as BotoConfig

        self.config = config
        self.lock = threading.RLock()
        self.store = MetricStore(buckets=config.buckets)
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.state_dir / "state.json"
        self._lock_fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise RuntimeError(f"another exporter already uses the state directory {self.state_dir}") from exc
        session = session or make_session(config.endpoint_url, config.region)
        boto_cfg = BotoConfig(retries={"mode": "adaptive", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
        self.logs = session.client("logs", endpoint_url=config.endpoint_url, config=boto_cfg)
        self.sqs = session.client("sqs", endpoint_url=config.endpoint_url, config=boto_cfg)
        checkpoints = self._load_state()
        self.follower = LogFollower(
            self.logs,
            config.log_group_prefixes,
            config.log_groups,
            int(config.overlap_seconds * 1000),
            int(config.initial_lookback_seconds * 1000),
            checkpoints,
            recent_overlap_ms=int(config.recent_overlap_seconds * 1000),
            deep_interval_ms=int(config.deep_poll_seconds * 1000),
            discover_interval_ms=int(config.discover_seconds * 1000),
            idle_interval_ms=int(config.idle_poll_seconds * 1000),
        )
        self.queues = QueuePoller(self.sqs, config.queue_urls)
        self.polls = 0
        self.poll_errors: dict[str, int] = {}
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.started = time.time()
        self.registry = make_registry(self.store, self.lock, self._status_metrics)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None

    # ---- state -------------------------------------------------------------------------
    def _load_state(self) -> dict:
        if not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')}")
            self.store.load_dict(data["metrics"])
            log.info("resumed from %s (%d log groups)", self.state_file, len(data["checkpoints"]))
            return data["checkpoints"]
        except Exception as exc:  # noqa: BLE001 -- any unreadable state is set aside, never fatal
            aside = self.state_file.with_name(f"state.json.unreadable-{int(time.time())}")
            os.replace(self.state_file, aside)
            log.error("state %s unreadable (%s); moved to %s, starting over from the logs", self.state_file, exc, aside)
            self.store = MetricStore(buckets=self.config.buckets)
            return {}

    def _snapshot(self) -> None:
        """Metrics and checkpoints in one file, replaced atomically (tmp + fsync + rename)."""
        with self.lock:
            payload = json.dumps(
                {
                    "version": STATE_VERSION,
                    "savedAt": time.time(),
                    "metrics": self.store.to_dict(),
                    "checkpoints": self.follower.state,
                },
                separators=(",", ":"),
            )
        tmp = self.state_file.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # ---- polling -----------------------------------------------------------------------
    def _handle_event(self, event: dict, group: str = "") -> None:
        store = self.store
        timestamp_ms = int(event.get("timestamp", 0))
        result = parse_message(event.get("message", ""), timestamp_ms)
        if result.reports:
            function = function_of(group)
            for report in result.reports:
                store.ingest_report(function, report, timestamp_ms)
        for reason in result.errors:
            store.inc("valerix_exporter_parse_errors", (("reason", reason),))
        if result.emf_documents:
            store.inc("valerix_exporter_emf_documents", (), result.emf_documents)
        if result.ignored_lines:
            store.inc("valerix_exporter_ignored_lines", (), result.ignored_lines)
        allowed = self.config.namespaces
        for record in result.records:
            if "*" not in allowed and record.namespace not in allowed:
                store.inc("valerix_exporter_dropped_records", (("reason", "namespace"),))
                continue
            store.ingest(record)

    def _error(self, operation: str, exc: Exception) -> None:
        self.poll_errors[operation] = self.poll_errors.get(operation, 0) + 1
        self.last_error = f"{operation}: {exc}"
        log.warning("%s failed: %s", operation, exc)

    def poll_once(self) -> int:
        """One poll of every log group and queue; returns the number of new log events."""
        ok = True
        changed = 0
        try:
            groups = self.follower.discover()
        except Exception as exc:  # noqa: BLE001 -- counted and reported by _error; the poll loop lives on
            self._error("describe_log_groups", exc)
            groups, ok = list(self.follower.known), False
        for group in self.follower.due(groups):
            try:
                events = self.follower.fetch(group)
            except Exception as exc:  # noqa: BLE001 -- counted and reported by _error; the poll loop lives on
                self._error("filter_log_events", exc)
                ok = False
                continue
            if events is None:
                continue
            with self.lock:
                new, dup = self.follower.accept(
                    group, events, lambda event, group=group: self._handle_event(event, group)
                )
                if new:
                    self.store.inc("valerix_exporter_log_events", (("result", "processed"),), new)
                if dup:
                    self.store.inc("valerix_exporter_log_events", (("result", "duplicate"),), dup)
            changed += new
        with self.lock:
            before = len(self.store.samples)
            self.store.prune_samples()
            pruned = before != len(self.store.samples)
        if changed or pruned or self.polls == 0:
            try:
                self._snapshot()
            except Exception as exc:  # noqa: BLE001 -- counted and reported by _error; the poll loop lives on
                self._error("snapshot", exc)
                ok = False
        if self.queues.main or self.queues.dlq:
            queues, errors = self.queues.poll()
            for _ in errors:
                self._error("get_queue_attributes", RuntimeError("see log"))
            ok = ok and not errors
            with self.lock:
                self.store.set_queues(queues)
        self.polls += 1
        if ok:
            self.last_success = time.time()
        return changed

    def _status_metrics(self):
        m = Metric("valerix_exporter_poll_errors", "Failed AWS calls of the poll loop, by operation.", "counter")
        for op, n in sorted(self.poll_errors.items()):
            m.add_sample("valerix_exporter_poll_errors_total", {"operation": op}, n)
        g = Metric("valerix_exporter_log_groups", "Log groups followed.", "gauge")
        g.add_sample("valerix_exporter_log_groups", {}, len(self.follower.known))
        p = Metric("valerix_exporter_polls", "Poll cycles since the process started.", "counter")
        p.add_sample("valerix_exporter_polls_total", {}, self.polls)
        t = Metric(
            "valerix_exporter_last_success_timestamp_seconds", "Unix time of the last poll without errors.", "gauge"
        )
        t.add_sample("valerix_exporter_last_success_timestamp_seconds", {}, self.last_success or 0)
        st = Metric("valerix_exporter_start_time_seconds", "Unix time the exporter started.", "gauge")
        st.add_sample("valerix_exporter_start_time_seconds", {}, self.started)
        return [m, g, p, t, st]

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                self._error("poll", exc)
            self._stop.wait(max(0.05, self.config.poll_interval - (time.monotonic() - started)))

    # ---- HTTP --------------------------------------------------------------------------
    def summary(self, now: float | None = None) -> dict:
        with self.lock:
            return build_summary(self.store, now=now, window_s=self.config.latency_window_seconds)

    def health(self) -> tuple[int, dict]:
        now = time.time()
        age = None if self.last_success is None else round(now - self.last_success, 3)
        healthy = (age is not None and age < max(30.0, 10 * self.config.poll_interval)) or (
            self.last_success is None and now - self.started < 30.0
        )
        body = {
            "status": "ok" if healthy else "failing",
            "polls": self.polls,
            "lastSuccessAgeSeconds": age,
            "lastError": self.last_error,
            "logGroups": list(self.follower.known),
        }
        return (200 if healthy else 503), body

    def serve(self) -> int:
        exporter = self
        origin_allowed = origin_matcher(self.config.cors_origins)

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one connection per request, so no scraper stays attached to a closed exporter
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt, *args):  # quiet access log
                log.debug("http %s", fmt % args)

            def _cors(self) -> None:
                # Only the dashboard's origin(s) may read answers in a browser; other sites get no
                # CORS header, so their scripts cannot read metrics from a user's machine.
                origin = self.headers.get("Origin")
                if origin_allowed(origin):
                    self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Vary", "Origin")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self._cors()
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, doc: dict) -> None:
                self._send(status, json.dumps(doc).encode(), "application/json")

            def do_OPTIONS(self):
                origin = self.headers.get("Origin")
                if not origin_allowed(origin):
                    return self._json(
                        403,
                        {
                            "message": f"origin {origin or '(none)'} is not allowed to "
                            "read this exporter (see --cors-origins)"
                        },
                    )
                self.send_response(204)
                self._cors()
                self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
                self.send_header("Access-Control-Max-Age", "600")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if exporter._stop.is_set():
                    self.close_connection = True
                    return self._json(503, {"message": "exporter stopping"})
                try:
                    if path == "/metrics":
                        encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                        self._send(200, encoder(exporter.registry), ctype)
                    elif path == "/api/summary":
                        self._json(200, exporter.summary())
                    elif path == "/healthz":
                        self._json(*exporter.health())
                    elif path == "/":
                        self._json(
                            200, {"service": "valerix-exporter", "endpoints": ["/metrics", "/api/summary", "/healthz"]}
                        )
                    else:
                        self._json(404, {"message": f"no such path: {path}"})
                except Exception as exc:
                    log.exception("request failed")
                    self._json(500, {"message": f"exporter error: {exc.__class__.__name__}"})

            do_HEAD = do_GET

        if not is_loopback_host(self.config.host):
            log.warning(
                "listening on %s: every machine that can reach this one can read these metrics", self.config.host
            )
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self.config.host, self.config.port), Handler)
        port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="exporter-http", daemon=True).start()
        with contextlib.suppress(OSError):
            (self.state_dir / "endpoint.json").write_text(
                json.dumps({"pid": os.getpid(), "port": port, "url": f"http://127.0.0.1:{port}"})
            )
        return port

    def start(self) -> int:
        """Serve HTTP and poll in background threads; returns the HTTP port."""
        port = self.serve()
        self._thread = threading.Thread(target=self.run, name="exporter-poll", daemon=True)
        self._thread.start()
        return port

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
