"""An EMF document is one write of one whole line: consumers handle records on several threads,
and a log line landing between the document and its newline broke both (seen in `make logs`
and in what CloudWatch's EMF parser receives)."""

from __future__ import annotations

import json
import threading

from functions.common.observability import MetricUnit, get_logger, put_metric


class RecordingStdout:
    def __init__(self) -> None:
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_metric_is_a_single_write_of_a_whole_json_line(monkeypatch):
    out = RecordingStdout()
    monkeypatch.setattr("sys.stdout", out)
    put_metric("OrderOutcomes", MetricUnit.Count, 1, service="order", status="CONFIRMED", path="queued")
    assert len(out.writes) == 1
    [line] = out.writes
    assert line.endswith("\n") and line.count("\n") == 1
    document = json.loads(line)
    assert document["OrderOutcomes"] == [1.0] and document["service"] == "order"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "status", "path"]]


def test_metrics_and_log_lines_from_many_threads_stay_whole_lines(monkeypatch):
    out = RecordingStdout()
    monkeypatch.setattr("sys.stdout", out)
    logger = get_logger("metric-lines-test")
    for handler in logger.handlers:  # the Powertools handler captured the real stdout at creation
        monkeypatch.setattr(handler, "stream", out)

    def work(n: int) -> None:
        for i in range(50):
            put_metric("QueueRecords", MetricUnit.Count, 1, service="order", outcome="processed")
            logger.info("record", extra={"n": n, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(out.writes).splitlines()
    assert len(lines) == 6 * 50 * 2
    assert all(isinstance(json.loads(line), dict) for line in lines)
