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


def test_handlers_count_their_cold_start_once_in_one_whole_line(monkeypatch):
    """The handlers' Powertools decorators: `ColdStart` (service, function_name) after the first
    invocation only, written like every other metric; the Lambda context on the log lines; and
    no "no metrics" warning for invocations that emitted theirs already."""
    import warnings

    from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag

    from functions.common.observability import get_metrics
    from valerix_localcloud.invoke_emulator import lambda_context

    out = RecordingStdout()
    monkeypatch.setattr("sys.stdout", out)
    logger, metrics = get_logger("cold-start-test"), get_metrics("cold-start-test")
    for handler in logger.handlers:
        monkeypatch.setattr(handler, "stream", out)

    @logger.inject_lambda_context(log_event=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event, context):
        logger.info("handled")
        return {"echo": event}

    reset_cold_start_flag()  # a new execution environment
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert handler({"n": 1}, lambda_context("valerix-cold-start-test")) == {"echo": {"n": 1}}
        assert handler({"n": 2}, lambda_context("valerix-cold-start-test")) == {"echo": {"n": 2}}
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in out.writes)
    documents = [json.loads(w) for w in out.writes]
    [cold] = [d for d in documents if "ColdStart" in d]
    assert cold["ColdStart"] == [1.0]
    assert (cold["service"], cold["function_name"]) == ("cold-start-test", "valerix-cold-start-test")
    assert cold["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "function_name"]]
    handled = [d for d in documents if d.get("message") == "handled"]
    assert len(handled) == 2 and {d["function_name"] for d in handled} == {"valerix-cold-start-test"}
