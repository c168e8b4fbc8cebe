"""``python -m valerix_exporter --endpoint-url http://127.0.0.1:4566 --port 9108 ...``"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .app import Config, Exporter
from .sources import parse_queue_urls


def _csv(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m valerix_exporter",
        description="Follow CloudWatch Logs, turn EMF lines into Prometheus metrics, serve "
        "/metrics, /api/summary (JSON, CORS for --cors-origins) and /healthz.",
    )
    p.add_argument(
        "--endpoint-url",
        default=env("VALERIX_EXPORTER_ENDPOINT_URL") or None,
        help="AWS endpoint (LocalStack: http://127.0.0.1:4566). Default: real AWS.",
    )
    p.add_argument(
        "--region",
        default=env("VALERIX_EXPORTER_REGION") or None,
        help="AWS region (default: the SDK's configuration, else us-east-1)",
    )
    p.add_argument(
        "--log-group-prefix",
        default=env("VALERIX_EXPORTER_LOG_GROUP_PREFIX"),
        help="comma-separated log group name prefixes, re-discovered every --discover-seconds "
        "(default /aws/lambda/ unless --log-groups is given; '' to disable)",
    )
    p.add_argument(
        "--log-groups",
        default=env("VALERIX_EXPORTER_LOG_GROUPS", ""),
        help="comma-separated log group names to follow (may not exist yet)",
    )
    p.add_argument(
        "--queue-urls",
        default=env("VALERIX_EXPORTER_QUEUE_URLS", ""),
        help="name=url,... SQS queues for valerix_queue_depth; DLQs are found through "
        "each queue's RedrivePolicy (or given as <name>-dlq=url)",
    )
    p.add_argument(
        "--host",
        default=env("VALERIX_EXPORTER_HOST", "127.0.0.1"),
        help="address to listen on (default loopback; 0.0.0.0 = every interface, e.g. in a container)",
    )
    p.add_argument(
        "--cors-origins",
        default=env("VALERIX_EXPORTER_CORS_ORIGINS", ""),
        help="comma-separated browser origins allowed to read the answers (the dashboard's); "
        "'*' inside an origin stands for one DNS label. Default: none",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("VALERIX_EXPORTER_PORT", "9108")),
        help="HTTP port (0 = any free port; written to <state-dir>/endpoint.json)",
    )
    p.add_argument(
        "--state-dir",
        default=env("VALERIX_EXPORTER_STATE_DIR", ".valerix/exporter"),
        help="checkpoints + aggregated metrics (state.json, replaced atomically)",
    )
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument(
        "--overlap-seconds",
        type=float,
        default=60.0,
        help="re-read window for late-ingested events (deduplicated by eventId)",
    )
    p.add_argument(
        "--recent-overlap-seconds",
        type=float,
        default=2.0,
        help="re-read window of the ordinary polls (the full --overlap-seconds is re-read every --deep-poll-seconds)",
    )
    p.add_argument(
        "--deep-poll-seconds", type=float, default=10.0, help="how often a poll re-reads the whole overlap window"
    )
    p.add_argument(
        "--discover-seconds", type=float, default=30.0, help="how often log groups are re-discovered by prefix"
    )
    p.add_argument(
        "--idle-poll-seconds", type=float, default=3.0, help="a log group with nothing new is polled at most this often"
    )
    p.add_argument(
        "--initial-lookback-seconds",
        type=float,
        default=0.0,
        help="how far back to start in a log group seen for the first time (0 = its beginning)",
    )
    p.add_argument("--namespaces", default="Valerix", help="comma-separated EMF namespaces to export ('*' = all)")
    p.add_argument("--once", action="store_true", help="poll once, print /metrics, exit")
    p.add_argument("--log-level", default=env("VALERIX_EXPORTER_LOG_LEVEL", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    groups = _csv(args.log_groups)
    prefixes = ([] if groups else ["/aws/lambda/"]) if args.log_group_prefix is None else _csv(args.log_group_prefix)
    return Config(
        endpoint_url=args.endpoint_url,
        region=args.region,
        log_group_prefixes=prefixes,
        log_groups=groups,
        queue_urls=parse_queue_urls(args.queue_urls),
        host=args.host,
        cors_origins=_csv(args.cors_origins),
        port=args.port,
        state_dir=args.state_dir,
        poll_interval=args.poll_interval,
        overlap_seconds=args.overlap_seconds,
        initial_lookback_seconds=args.initial_lookback_seconds,
        recent_overlap_seconds=args.recent_overlap_seconds,
        deep_poll_seconds=args.deep_poll_seconds,
        discover_seconds=args.discover_seconds,
        idle_poll_seconds=args.idle_poll_seconds,
        namespaces=_csv(args.namespaces) or ["*"],
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log = logging.getLogger("valerix_exporter")
    config = config_from_args(args)
    try:
        exporter = Exporter(config)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 2
    if args.once:
        from prometheus_client import generate_latest

        exporter.poll_once()
        sys.stdout.write(generate_latest(exporter.registry).decode())
        exporter.close()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    port = exporter.start()
    log.info(
        "valerix exporter on http://%s:%d (endpoint %s, region %s, prefixes %s, groups %s, queues %s)",
        config.host,
        port,
        config.endpoint_url or "AWS",
        exporter.logs.meta.region_name,
        config.log_group_prefixes,
        config.log_groups,
        sorted(config.queue_urls),
    )
    stop.wait()
    log.info("stopping")
    exporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
