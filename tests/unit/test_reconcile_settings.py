"""The reconcile function's environment: parsed once, every mistake named."""

from __future__ import annotations

import pytest

from functions.common.settings import SettingsError
from functions.reconcile.settings import ReconcileSettings

ENV = {
    "ORDER_DB_SECRET_ARN": "arn:order-reader",
    "INVENTORY_DB_SECRET_ARN": "arn:inventory-reader",
    "DLQ_URLS": "inventory=http://q/inv-dlq, completion=http://q/comp-dlq",
    "DB_TLS": "disable",
}


def test_parsed():
    settings = ReconcileSettings.from_env(ENV)
    assert settings.dlq_urls == {"inventory": "http://q/inv-dlq", "completion": "http://q/comp-dlq"}
    assert settings.stale_minutes == 5 and settings.db_tls.mode == "disable"
    assert ReconcileSettings.from_env({**ENV, "RECONCILE_STALE_MINUTES": "12"}).stale_minutes == 12


@pytest.mark.parametrize(
    "change, named",
    [
        ({"ORDER_DB_SECRET_ARN": ""}, "ORDER_DB_SECRET_ARN"),
        ({"INVENTORY_DB_SECRET_ARN": " "}, "INVENTORY_DB_SECRET_ARN"),
        ({"DLQ_URLS": ""}, "DLQ_URLS"),  # no silent "DLQs empty" for want of a queue to check
        ({"DLQ_URLS": "inventory"}, "DLQ_URLS"),
        ({"DLQ_URLS": "=http://q/x"}, "DLQ_URLS"),
        ({"RECONCILE_STALE_MINUTES": "0"}, "RECONCILE_STALE_MINUTES"),
        ({"RECONCILE_STALE_MINUTES": "five"}, "RECONCILE_STALE_MINUTES"),
        ({"DB_TLS": "prefer"}, "DB_TLS"),
    ],
)
def test_mistakes_are_named(change, named):
    with pytest.raises(SettingsError, match=named):
        ReconcileSettings.from_env({**ENV, **change})
