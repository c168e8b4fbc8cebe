"""Lambda entry point of the gremlin control API (API Gateway REST proxy)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from mangum import Mangum

from functions.gremlin.app import app

logger = Logger()
metrics = Metrics()
_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def api_handler(event, context):
    return _asgi(event, context)
