"""Lambda entry point of the gremlin control API (API Gateway REST proxy), under the Powertools
Tracer (X-Ray on AWS, nothing locally); its correlation id comes from the request (common/api.py)."""

from __future__ import annotations

from functions.common.api import make_api_handler
from functions.common.observability import traced
from functions.gremlin.app import app

api_handler = traced(make_api_handler(app))
