"""The public REST routes (docs/design.md's contract): path, method, function, admin key.

Creation order is kept as it was: the API deployment's logical id hashes the methods in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from aws_cdk import aws_apigateway as apigw

from infra.constructs import db_limits
from infra.constructs.api import ValerixApi
from infra.constructs.service_function import ServiceFunction


class Route(NamedTuple):
    path: str
    method: str
    function: str  # a key of ServiceFunctions.functions
    admin: bool = False  # requires the admin API key at the gateway (the function checks it again)


ROUTES = (
    Route("/orders", "POST", "OrderApi"),
    Route("/orders", "GET", "OrderApi"),
    Route("/orders/{orderId}", "GET", "OrderApi"),
    Route("/health/order", "GET", "OrderApi"),
    Route("/products", "GET", "InventoryApi"),
    Route("/products/{productId}", "GET", "InventoryApi"),
    Route("/admin/products/{productId}", "PUT", "InventoryApi", admin=True),
    Route("/health/inventory", "GET", "InventoryApi"),
    Route("/gremlin", "GET", "Gremlin"),
    Route("/gremlin", "PUT", "Gremlin", admin=True),
    Route("/gremlin", "DELETE", "Gremlin", admin=True),
)


def add_routes(api: ValerixApi, functions: Mapping[str, ServiceFunction]) -> None:
    for route in ROUTES:
        # The alias of the published version where the function has SnapStart (service_function.py).
        api.route(route.path, route.method, functions[route.function].invoke_target, api_key_required=route.admin)


def method_throttles(rate_limit: int, burst_limit: int) -> dict[str, apigw.ThrottleSettings]:
    """ "/path/METHOD" -> the route's gateway throttle, for routes whose function has a reserved
    concurrency (db_limits.BUDGET): no more requests admitted at once (burst) than it has
    environments, and no more per second than one per environment -- an API request normally
    takes well under a second. The stage's limits (`rate_limit`, `burst_limit`) stay the ceiling.
    What still reaches a function with every environment busy (routes of one function share
    them; a request waiting out the inventory budget holds one for 2 s) is a 503 with
    Retry-After (api.py)."""
    throttles = {}
    for route in ROUTES:
        use = db_limits.BUDGET.get(route.function)
        if use is not None:
            throttles[f"{route.path}/{route.method}"] = apigw.ThrottleSettings(
                rate_limit=min(rate_limit, use.environments), burst_limit=min(burst_limit, use.environments)
            )
    return throttles
