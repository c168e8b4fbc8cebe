"""Gremlin persistence: the document in SSM, the ``every: N`` counters and the stop markers in
DynamoDB, the stop conditions' alarms in CloudWatch.

Stop conditions name CloudWatch alarms: only the alarms listed in ``GREMLIN_STOP_ALARMS``
(comma-separated; the stack sets it) that exist in CloudWatch are accepted. The
"stopped" marker lives in the counters table (:func:`functions.gremlin.document.stop_id`), so a
``PUT``/``DELETE`` (which resets the counters) clears it. :func:`check_stop` is shared with the
injector, which checks the same marker.

The document is stored in its full public shape (defaults included), so ``GET`` returns
exactly what inventory obeys. Counters are the items of ``GREMLIN_STATE_TABLE`` (pk ``id``,
see :func:`functions.gremlin.document.counter_id`); resetting deletes them all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from functions.common import aws
from functions.common.observability import get_logger
from functions.common.settings import GremlinSettings
from functions.gremlin.document import (
    GremlinDocument,
    GremlinDocumentError,
    all_off,
    parse_document_json,
    stop_id,
)

logger = get_logger("gremlin")


class StoreUnavailable(RuntimeError):
    """SSM or DynamoDB could not be used (a fault, not bad input: 503)."""


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code if isinstance(code, str) else None


class GremlinStore:
    """What the gremlin API reads and writes. Clients are the environment's shared ones
    (functions/common/aws.py), created on first use; tests may pass their own."""

    def __init__(
        self,
        settings: GremlinSettings,
        *,
        ssm_client: Any = None,
        dynamodb_client: Any = None,
        cloudwatch_client: Any = None,
    ) -> None:
        self.parameter_name = settings.parameter_name or ""
        self.table_name = settings.state_table or ""
        self.stop_alarms = list(settings.stop_alarms)
        self._ssm = ssm_client
        self._dynamodb = dynamodb_client
        self._cloudwatch = cloudwatch_client

    @property
    def ssm(self) -> Any:
        return self._ssm or aws.client("ssm")

    @property
    def dynamodb(self) -> Any:
        return self._dynamodb or aws.client("dynamodb")

    @property
    def cloudwatch(self) -> Any:
        return self._cloudwatch or aws.client("cloudwatch")

    def check_stop_conditions(self, doc: GremlinDocument) -> None:
        """Refuse (422, naming ``stopConditions.<i>``) an alarm that is not one of this stack's."""
        names = doc.stop_conditions or []
        if not names:
            return
        errors: list[dict[str, str]] = []
        if not self.stop_alarms:
            errors = [
                {
                    "field": "stopConditions",
                    "message": "stop conditions are not available here (no alarms are known to the gremlin)",
                }
            ]
        else:
            try:  # only listed names are sent: the caller cannot probe other alarms
                listed = [n for n in names if n in self.stop_alarms]
                found = (
                    {}
                    if not listed
                    else self.cloudwatch.describe_alarms(
                        AlarmNames=listed, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
                    )
                )
            except Exception as exc:
                raise StoreUnavailable(f"cannot read CloudWatch alarms: {exc}") from exc
            known = {a["AlarmName"] for a in [*found.get("MetricAlarms", []), *found.get("CompositeAlarms", [])]}
            for index, name in enumerate(names):
                if name not in self.stop_alarms or name not in known:
                    errors.append(
                        {
                            "field": f"stopConditions.{index}",
                            "message": f"unknown alarm '{name}' (known: {', '.join(self.stop_alarms)})",
                        }
                    )
        if errors:
            text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            raise GremlinDocumentError(f"invalid gremlin document: {text}", errors)

    def stopped(self, doc: GremlinDocument, now: float) -> dict[str, str] | None:
        """The stop marker of ``doc`` (checking its alarms now); ``None`` when not stopped."""
        if not doc.stop_conditions:
            return None
        table = self._require(self.table_name, "GREMLIN_STATE_TABLE")
        try:
            return check_stop(self.dynamodb, self.cloudwatch, table, doc, now)
        except Exception as exc:
            raise StoreUnavailable(f"cannot check the gremlin's stop conditions: {exc}") from exc

    def _require(self, value: str, variable: str) -> str:
        if not value:
            raise StoreUnavailable(f"gremlin is not configured: {variable} is not set")
        return value

    def load(self) -> GremlinDocument:
        """The stored document; all off when there is none (or it is unreadable garbage)."""
        name = self._require(self.parameter_name, "GREMLIN_PARAMETER_NAME")
        try:
            raw = self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except Exception as exc:
            if _error_code(exc) == "ParameterNotFound":
                return all_off()
            raise StoreUnavailable(f"cannot read gremlin parameter {name}: {exc}") from exc
        try:
            return parse_document_json(raw)
        except GremlinDocumentError as exc:
            # Inventory treats an invalid stored document as "all off"; say the same.
            logger.warning("stored gremlin document is invalid; reporting all off", extra={"error": exc.message})
            return all_off()

    def save(self, doc: GremlinDocument) -> GremlinDocument:
        name = self._require(self.parameter_name, "GREMLIN_PARAMETER_NAME")
        try:
            self.ssm.put_parameter(Name=name, Value=doc.to_json(), Type="String", Overwrite=True)
        except Exception as exc:
            raise StoreUnavailable(f"cannot write gremlin parameter {name}: {exc}") from exc
        return doc

    def reset_counters(self) -> int:
        """Delete every ``every: N`` counter; returns how many were deleted."""
        table = self._require(self.table_name, "GREMLIN_STATE_TABLE")
        deleted = 0
        try:
            paginator = self.dynamodb.get_paginator("scan")
            for page in paginator.paginate(
                TableName=table, ProjectionExpression="#id", ExpressionAttributeNames={"#id": "id"}
            ):
                for item in page.get("Items", []):
                    self.dynamodb.delete_item(TableName=table, Key={"id": item["id"]})
                    deleted += 1
        except Exception as exc:
            raise StoreUnavailable(f"cannot reset gremlin counters in {table}: {exc}") from exc
        return deleted

    def replace(self, doc: GremlinDocument) -> GremlinDocument:
        """Reset the counters, then store ``doc`` (overwriting): the pattern starts afresh."""
        removed = self.reset_counters()
        self.save(doc)
        logger.info(
            "gremlin document replaced",
            extra={"gremlin_document": doc.to_json_dict(), "counters_reset": removed},
        )
        return doc


# ------------------------------------------------------------------ stop conditions (shared with the injector)


def alarm_in_alarm(cloudwatch: Any, names: list[str]) -> str | None:
    """The first of ``names`` whose CloudWatch alarm state is ALARM, or ``None``."""
    found = cloudwatch.describe_alarms(AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    for alarm in [*found.get("MetricAlarms", []), *found.get("CompositeAlarms", [])]:
        if alarm.get("StateValue") == "ALARM":
            return str(alarm["AlarmName"])
    return None


def read_stop_marker(dynamodb: Any, table: str, doc: GremlinDocument) -> dict[str, str] | None:
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": stop_id(doc)}}, ConsistentRead=True).get("Item")
    if not item:
        return None
    return {"alarm": item["alarm"]["S"], "at": item["at"]["S"]}


def write_stop_marker(dynamodb: Any, table: str, doc: GremlinDocument, alarm: str, now: float) -> dict[str, str]:
    at = dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dynamodb.put_item(TableName=table, Item={"id": {"S": stop_id(doc)}, "alarm": {"S": alarm}, "at": {"S": at}})
    return {"alarm": alarm, "at": at}


def check_stop(dynamodb: Any, cloudwatch: Any, table: str, doc: GremlinDocument, now: float) -> dict[str, str] | None:
    """Has a stop condition of ``doc`` fired? The marker if it already did; else the alarms are
    read and, if one is in ALARM, the marker is written (so it stays off when the alarm clears)."""
    if not doc.stop_conditions:
        return None
    marker = read_stop_marker(dynamodb, table, doc)
    if marker:
        return marker
    fired = alarm_in_alarm(cloudwatch, doc.stop_conditions)
    return write_stop_marker(dynamodb, table, doc, fired, now) if fired else None
