"""Lambda entry point of the gremlin control API (API Gateway REST proxy)."""

from __future__ import annotations

from functions.common.api import make_api_handler
from functions.gremlin.app import app

api_handler = make_api_handler(app)
