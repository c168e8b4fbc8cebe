"""AWS sources: CloudWatch Logs (incremental, checkpointed) and SQS queue depths."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from botocore.exceptions import ClientError

log = logging.getLogger("valerix_exporter")


class LogFollower:
    """Follows log groups with FilterLogEvents.

    Checkpoint per log group: ``watermark`` (newest event timestamp seen, ms) and ``seen``
    (``eventId|stream|timestamp`` -> timestamp for events newer than ``watermark - overlap``).
    Events can be ingested late (out of timestamp order, e.g. from another Lambda execution
    environment's stream), so a poll reads from ``watermark - overlap`` and the ``seen`` set drops
    the re-read ones. Events older than the overlap window at the time they are ingested would be
    missed; the overlap is configurable (``--overlap-seconds``).

    Cost matters as much as completeness: the exporter polls every second, and FilterLogEvents
    pays for every event in the window it returns. So most polls re-read only a short
    ``recent_overlap`` and one poll every ``deep_interval`` re-reads the whole overlap (a late
    event is then counted at most that much later, never lost). Log-group discovery
    (DescribeLogGroups, which LocalStack answers by deep-copying every stored event, and which
    AWS rate-limits) runs every ``discover_interval``, not on every poll; a group that had nothing
    new is polled at most every ``idle_interval``.
    """

    def __init__(
        self,
        client,
        prefixes: list[str],
        groups: list[str],
        overlap_ms: int,
        initial_lookback_ms: int = 0,
        state: dict | None = None,
        *,
        recent_overlap_ms: int = 2_000,
        deep_interval_ms: int = 10_000,
        discover_interval_ms: int = 30_000,
        idle_interval_ms: int = 3_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.prefixes = [p for p in prefixes if p]
        self.explicit = [g for g in groups if g]
        self.overlap_ms = overlap_ms
        self.recent_overlap_ms = min(recent_overlap_ms, overlap_ms)
        self.deep_interval_ms = deep_interval_ms
        self.discover_interval_ms = discover_interval_ms
        self.idle_interval_ms = idle_interval_ms
        self.initial_lookback_ms = initial_lookback_ms
        self.state: dict = state if state is not None else {}
        self.known: list[str] = []
        self.clock = clock
        self._discovered_at: float | None = None
        self._deep_read_at: dict[str, float] = {}
        self._polled_at: dict[str, float] = {}
        self._idle: set[str] = set()

    def _ms_since(self, then: float | None) -> float:
        return float("inf") if then is None else (self.clock() - then) * 1000

    def discover(self) -> list[str]:
        if self._ms_since(self._discovered_at) < self.discover_interval_ms:
            return self.known
        found = set(self.explicit)
        for prefix in self.prefixes:
            for page in self.client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
                for group in page.get("logGroups", []):
                    found.add(group["logGroupName"])
        self._discovered_at = self.clock()
        new = sorted(found - set(self.known))
        for g in new:
            log.info("following log group %s", g)
        self.known = sorted(found)
        return self.known

    def due(self, groups: list[str]) -> list[str]:
        """The groups to poll now: busy ones every time, idle ones every ``idle_interval``."""
        return [
            g for g in groups if g not in self._idle or self._ms_since(self._polled_at.get(g)) >= self.idle_interval_ms
        ]

    def fetch(self, group: str) -> list[dict] | None:
        """All events of ``group`` from the checkpoint on; None when the group does not exist."""
        st = self.state.get(group)
        if st is None:
            start = 0 if not self.initial_lookback_ms else int(time.time() * 1000) - self.initial_lookback_ms
        elif self._ms_since(self._deep_read_at.get(group)) >= self.deep_interval_ms:
            start = max(0, st["watermark"] - self.overlap_ms)
            self._deep_read_at[group] = self.clock()
        else:
            start = max(0, st["watermark"] - self.recent_overlap_ms)
        self._polled_at[group] = self.clock()
        events: list[dict] = []
        kwargs = {"logGroupName": group, "startTime": start, "limit": 10000}
        try:
            while True:
                page = self.client.filter_log_events(**kwargs)
                events.extend(page.get("events", []))
                token = page.get("nextToken")
                if not token or token == kwargs.get("nextToken"):
                    break
                kwargs["nextToken"] = token
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                self._idle.add(group)
                return None
            raise
        if st is None:
            self.state[group] = {"watermark": start, "seen": {}}
        return events

    def accept(self, group: str, events: list[dict], handle: Callable[[dict], None]) -> tuple[int, int]:
        """Feed the not-yet-seen events to ``handle``; advance the checkpoint. (new, duplicates)"""
        st = self.state[group]
        seen: dict = st["seen"]
        new = dup = 0
        for event in sorted(events, key=lambda e: (e.get("timestamp", 0), e.get("eventId", ""))):
            ts = int(event.get("timestamp", 0))
            key = f"{event.get('eventId', '')}|{event.get('logStreamName', '')}|{ts}"
            if key in seen:
                dup += 1
                continue
            seen[key] = ts
            handle(event)
            new += 1
            if ts > st["watermark"]:
                st["watermark"] = ts
        horizon = st["watermark"] - self.overlap_ms
        for key in [k for k, t in seen.items() if t < horizon]:
            del seen[key]
        if new:
            self._idle.discard(group)
        else:
            self._idle.add(group)
        return new, dup


def parse_queue_urls(spec: str) -> dict[str, str]:
    """``inventory=url,completion=url`` (a bare URL is named after its queue)."""
    queues: dict[str, str] = {}
    for raw in (spec or "").split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" in item and not item.split("=", 1)[0].startswith(("http://", "https://")):
            name, url = item.split("=", 1)
        else:
            name, url = item.rstrip("/").rsplit("/", 1)[-1], item
        queues[name.strip()] = url.strip()
    return queues


class QueuePoller:
    """ApproximateNumberOfMessages of each queue and of its DLQ (from its RedrivePolicy).

    A queue named ``<x>-dlq`` / ``<x>_dlq`` in ``--queue-urls`` is taken as the DLQ of ``<x>``.
    """

    ATTRS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "RedrivePolicy")

    def __init__(self, client, queues: dict[str, str]):
        self.client = client
        self.main: dict[str, str] = {}
        self.dlq: dict[str, str] = {}
        for name, url in queues.items():
            for suffix in ("-dlq", "_dlq"):
                if name.lower().endswith(suffix) and len(name) > len(suffix):
                    self.dlq[name[: -len(suffix)]] = url
                    break
            else:
                self.main[name] = url
        self._discovered: dict[str, str] = {}

    def _attrs(self, url: str) -> dict:
        return self.client.get_queue_attributes(QueueUrl=url, AttributeNames=self.ATTRS)["Attributes"]

    def _dlq_url(self, name: str, redrive: str | None) -> str | None:
        if name in self.dlq:
            return self.dlq[name]
        if not redrive:
            return None
        if name not in self._discovered:
            import json

            arn = json.loads(redrive).get("deadLetterTargetArn", "")
            parts = arn.split(":")
            if len(parts) < 6:
                return None
            self._discovered[name] = self.client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])[
                "QueueUrl"
            ]
        return self._discovered[name]

    def poll(self) -> tuple[dict[str, dict], list[str]]:
        out: dict[str, dict] = {}
        errors: list[str] = []
        for name in sorted(set(self.main) | set(self.dlq)):
            entry = {"depth": None, "dlqDepth": None}
            try:
                redrive = None
                if name in self.main:
                    a = self._attrs(self.main[name])
                    redrive = a.get("RedrivePolicy")
                    entry.update(
                        depth=int(a.get("ApproximateNumberOfMessages", 0)),
                        inFlight=int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
                        queueName=self.main[name].rstrip("/").rsplit("/", 1)[-1],
                    )
                dlq = self._dlq_url(name, redrive)
                if dlq:
                    a = self._attrs(dlq)
                    entry.update(
                        dlqDepth=int(a.get("ApproximateNumberOfMessages", 0)),
                        dlqInFlight=int(a.get("ApproximateNumberOfMessagesNotVisible", 0)),
                        dlqQueueName=dlq.rstrip("/").rsplit("/", 1)[-1],
                    )
            except Exception as exc:  # noqa: BLE001 - keep polling the others
                log.warning("queue %s: %s", name, exc)
                errors.append(name)
            out[name] = entry
        return out, errors
