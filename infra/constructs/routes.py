"""The public REST routes (docs/design.md's contract): path, method, function, admin key.

Creation order is kept as it was: the API deployment's logical id hashes the methods in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

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
        api.route(route.path, route.method, functions[route.function].function, api_key_required=route.admin)
