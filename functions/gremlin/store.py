"""Gremlin persistence: the document in SSM, the ``every: N`` counters in DynamoDB.

The document is stored in its full public shape (defaults included), so ``GET`` returns
exactly what inventory obeys. Counters are the items of ``GREMLIN_STATE_TABLE`` (pk ``id``,
see :func:`functions.common.chaos.counter_id`); resetting deletes them all.
"""

from __future__ import annotations

import os
from typing import Any

from functions.common.chaos import GremlinDocument, GremlinDocumentError, all_off, parse_document_json
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
    ):
        self.parameter_name = parameter_name if parameter_name is not None else os.getenv("GREMLIN_PARAMETER_NAME", "")
        self.table_name = table_name if table_name is not None else os.getenv("GREMLIN_STATE_TABLE", "")
        self._ssm = ssm_client
        self._dynamodb = dynamodb_client

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
