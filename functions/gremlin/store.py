"""Gremlin persistence: the document in SSM, the ``every: N`` counters in DynamoDB.

Stop conditions name CloudWatch alarms: only the alarms listed in ``GREMLIN_STOP_ALARMS``
(comma-separated; the stack sets it) that exist in CloudWatch are accepted. The
"stopped" marker lives in the counters table (:func:`functions.common.chaos.stop_id`), so a
``PUT``/``DELETE`` (which resets the counters) clears it.

The document is stored in its full public shape (defaults included), so ``GET`` returns
exactly what inventory obeys. Counters are the items of ``GREMLIN_STATE_TABLE`` (pk ``id``,
see :func:`functions.common.chaos.counter_id`); resetting deletes them all.
"""

from __future__ import annotations

import os
from typing import Any

from functions.common.chaos import (
    GremlinDocument,
    GremlinDocumentError,
    all_off,
    check_stop,
    parse_document_json,
)
from functions.common.observability import get_logger

logger = get_logger("gremlin")


class StoreUnavailable(RuntimeError):
    """SSM or DynamoDB could not be used (a fault, not bad input: 503)."""


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


class GremlinStore:
    def __init__(
        self,
        parameter_name: str | None = None,
        table_name: str | None = None,
        *,
        ssm_client: Any = None,
        dynamodb_client: Any = None,
        cloudwatch_client: Any = None,
        stop_alarms: list[str] | None = None,
    ):
        self.parameter_name = parameter_name if parameter_name is not None else os.getenv("GREMLIN_PARAMETER_NAME", "")
        self.table_name = table_name if table_name is not None else os.getenv("GREMLIN_STATE_TABLE", "")
        self._ssm = ssm_client
        self._dynamodb = dynamodb_client
        self._cloudwatch = cloudwatch_client
        if stop_alarms is None:
            stop_alarms = [n.strip() for n in os.getenv("GREMLIN_STOP_ALARMS", "").split(",") if n.strip()]
        self.stop_alarms = stop_alarms

    @property
    def ssm(self):
        if self._ssm is None:
            import boto3

            self._ssm = boto3.client("ssm")
        return self._ssm

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            import boto3

            self._dynamodb = boto3.client("dynamodb")
        return self._dynamodb

    @property
    def cloudwatch(self):
        if self._cloudwatch is None:
            import boto3

            self._cloudwatch = boto3.client("cloudwatch")
        return self._cloudwatch

    def check_stop_conditions(self, doc: GremlinDocument) -> None:
        """Refuse (422, naming ``stopConditions.<i>``) an alarm that is not one of this stack's."""
        names = doc.stop_conditions or []
        if not names:
            return
        errors = []
        if not self.stop_alarms:
            errors = [{"field": "stopConditions", "message": "stop conditions are not available here "
                       "(no alarms are known to the gremlin)"}]
        else:
            try:  # only listed names are sent: the caller cannot probe other alarms
                listed = [n for n in names if n in self.stop_alarms]
                found = {} if not listed else self.cloudwatch.describe_alarms(
                    AlarmNames=listed, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            except Exception as exc:  # noqa: BLE001
                raise StoreUnavailable(f"cannot read CloudWatch alarms: {exc}") from exc
            known = {a["AlarmName"] for a in [*found.get("MetricAlarms", []), *found.get("CompositeAlarms", [])]}
            for index, name in enumerate(names):
                if name not in self.stop_alarms or name not in known:
                    errors.append({"field": f"stopConditions.{index}",
                                   "message": f"unknown alarm '{name}' (known: {', '.join(self.stop_alarms)})"})
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
        except Exception as exc:  # noqa: BLE001
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
        except Exception as exc:  # noqa: BLE001
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
        except Exception as exc:  # noqa: BLE001
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
        except Exception as exc:  # noqa: BLE001
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
