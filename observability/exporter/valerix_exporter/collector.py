"""prometheus_client Collector that exposes a MetricStore."""

from __future__ import annotations

import threading

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from .store import COUNTER, GAUGE, HISTOGRAM, MetricStore


class StoreCollector(Collector):
    def __init__(self, store: MetricStore, lock: threading.RLock, extra=None):
        self.store = store
        self.lock = lock
        self.extra = extra  # callable returning extra Metric objects (exporter status)

    def collect(self):
        with self.lock:
            families = []
            for fam in sorted(self.store.families.values(), key=lambda f: f.name):
                metric = Metric(fam.name, fam.help, fam.kind)
                for labels, value in sorted(fam.series.items()):
                    lbl = dict(labels)
                    if fam.kind == COUNTER:
                        metric.add_sample(fam.name + "_total", lbl, value)
                    elif fam.kind == GAUGE:
                        metric.add_sample(fam.name, lbl, value[0])
                    elif fam.kind == HISTOGRAM:
                        buckets, total, count = value
                        acc = 0
                        for bound, n in zip((*self.store.buckets, float("inf")), buckets, strict=False):
                            acc += n
                            metric.add_sample(fam.name + "_bucket", {**lbl, "le": floatToGoString(bound)}, acc)
                        metric.add_sample(fam.name + "_count", lbl, count)
                        metric.add_sample(fam.name + "_sum", lbl, total)
                families.append(metric)
            depth = Metric("valerix_queue_depth", "SQS ApproximateNumberOfMessages per queue (kind=main|dlq).", GAUGE)
            inflight = Metric(
                "valerix_queue_in_flight", "SQS ApproximateNumberOfMessagesNotVisible per queue (kind=main|dlq).", GAUGE
            )
            for name, q in sorted(self.store.queues.items()):
                for kind, prefix in (("main", ""), ("dlq", "dlq")):
                    key = "depth" if not prefix else "dlqDepth"
                    if q.get(key) is None:
                        continue
                    lbl = {
                        "queue": name,
                        "kind": kind,
                        "queue_name": q.get("queueName" if not prefix else "dlqQueueName") or "",
                    }
                    depth.add_sample("valerix_queue_depth", lbl, q[key])
                    nv = q.get("inFlight" if not prefix else "dlqInFlight")
                    if nv is not None:
                        inflight.add_sample("valerix_queue_in_flight", lbl, nv)
            families += [depth, inflight]
            if self.extra:
                families += list(self.extra())
        return families


def make_registry(store: MetricStore, lock, extra=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, lock, extra))
    return registry
