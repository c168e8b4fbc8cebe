"""The LocalStack hot-path patches: what they publish must equal what LocalStack would have."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from valerix_localcloud import patches


@dataclass(frozen=True)
class Item:  # the shape of LocalStack's LogItem
    log_group: str
    log_stream: str
    logs: str


def test_invocation_metrics_are_summed_per_function_and_metric():
    published = []
    metrics = patches.InvocationMetrics(publish=lambda account, region, data: published.append((account, region, data)))
    for _ in range(5):
        metrics.record_invocation("order-api", "000000000000", "us-east-1")
    metrics.record_error("order-api", "000000000000", "us-east-1")
    metrics.record_invocation("inventory-api", "000000000000", "us-east-1")
    metrics.record_invocation("order-api", "111111111111", "eu-west-1")
    metrics.flush()

    values = {
        (account, region, d["Dimensions"][0]["Value"], d["MetricName"]): d["Value"]
        for account, region, data in published
        for d in data
    }
    assert values == {
        ("000000000000", "us-east-1", "order-api", "Invocations"): 6,  # an error is an invocation too
        ("000000000000", "us-east-1", "order-api", "Errors"): 1,
        ("000000000000", "us-east-1", "inventory-api", "Invocations"): 1,
        ("111111111111", "eu-west-1", "order-api", "Invocations"): 1,
    }
    assert len(published) == 2  # one call per account and region
    assert all(
        d["Unit"] == "Count" and d["Dimensions"] == [{"Name": "FunctionName", "Value": d["Dimensions"][0]["Value"]}]
        for _, _, data in published
        for d in data
    )

    published.clear()
    metrics.flush()
    assert published == []  # counted once, published once


def test_a_failing_publish_loses_only_that_flush():
    calls = []

    def publish(account, region, data):
        calls.append(data)
        raise RuntimeError("cloudwatch down")

    metrics = patches.InvocationMetrics(publish=publish)
    metrics.record_invocation("f", "000000000000", "us-east-1")
    metrics.flush()  # must not raise
    assert len(calls) == 1


def test_queued_logs_become_one_call_per_stream_in_order():
    items = [
        Item("/aws/lambda/a", "s1", "START 1\nline 1\n\nEND 1\n"),
        Item("/aws/lambda/b", "s9", "START x\n"),
        Item("/aws/lambda/a", "s1", "START 2\nEND 2"),
        Item("/aws/lambda/a", "s2", "START 3\n"),
    ]
    calls = patches.batched_log_events(items)
    assert [(group, stream) for group, stream, _ in calls] == [
        ("/aws/lambda/a", "s1"),
        ("/aws/lambda/b", "s9"),
        ("/aws/lambda/a", "s2"),
    ]
    messages = [e["message"] for e in calls[0][2]]
    assert messages == ["START 1\n", "line 1\n", "END 1\n", "START 2\n", "END 2\n"]  # empty line dropped
    assert len({e["timestamp"] for _, _, events in calls for e in events}) == 1


def test_batches_respect_the_put_log_events_limits():
    many = [Item("g", "s", "x\n" * 6000), Item("g", "s", "y\n" * 6000)]
    calls = patches.batched_log_events(many)
    assert [len(events) for _, _, events in calls] == [10_000, 2_000]

    big_line = "z" * 300_000
    calls = patches.batched_log_events([Item("g", "s", "\n".join([big_line] * 7))])
    sizes = [sum(len(e["message"]) + patches.EVENT_OVERHEAD_BYTES for e in events) for _, _, events in calls]
    assert all(size <= patches.MAX_BYTES_PER_CALL for size in sizes)
    assert sum(len(events) for _, _, events in calls) == 7


def _stream_with(timestamps: list[int]):
    from moto.logs.models import LogStream

    class Group:
        subscription_filters: ClassVar[dict[str, Any]] = {}

    stream = LogStream.__new__(LogStream)
    stream.events = []
    stream.log_stream_name = "s"
    stream.log_group = Group()
    stream.stored_bytes = 0
    stream.upload_sequence_token = 0
    for ts in timestamps:
        stream.put_log_events([{"timestamp": ts, "message": f"m{ts}"}])
    return stream


def test_filtering_from_a_start_time_returns_what_moto_returns():
    from moto.logs.models import LogStream

    original = LogStream.filter_log_events
    fast = patches.from_start_time(original)
    seen_sizes = []

    def spy(stream, *args, **kwargs):
        seen_sizes.append(len(stream.events))
        return original(stream, *args, **kwargs)

    in_order = _stream_with(list(range(1000, 2000, 10)))
    for start in (None, 0, 1000, 1005, 1500, 1990, 1999, 5000):
        assert fast(in_order, start, None, "") == original(in_order, start, None, "")
    assert fast(in_order, 1500, 1600, "m15") == original(in_order, 1500, 1600, "m15")

    patches.from_start_time(spy)(in_order, 1900, None, "")
    assert seen_sizes[-1] == 10  # only the events from the start time on were searched

    shuffled = _stream_with([1000, 3000, 2000, 4000])
    patches.from_start_time(spy)(shuffled, 2500, None, "")
    assert seen_sizes[-1] == 4  # out of order: moto's full scan
    assert fast(shuffled, 2500, None, "") == original(shuffled, 2500, None, "")

    # appended later out of order: noticed, full scan again
    in_order.put_log_events([{"timestamp": 1, "message": "late"}])
    patches.from_start_time(spy)(in_order, 1900, None, "")
    assert seen_sizes[-1] == 101
