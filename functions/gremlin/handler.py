"""Lambda entry point of the gremlin control API (API Gateway REST proxy). The handler is built
by the shared factory (functions/common/api.py), with the same Powertools decorators as every
other handler (Tracer where tracing is on, Lambda context in the logs, `ColdStart` once); its
correlation id comes from the request."""

from __future__ import annotations

from functions.common.api import make_api_handler
from functions.common.observability import traced
from functions.gremlin.app import app

api_handler = traced(make_api_handler(app))
