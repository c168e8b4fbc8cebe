"""Context parsing of the CDK app (infra/config.py)."""

from __future__ import annotations

import json

import pytest

from infra.config import DEFAULT_LOCALSTACK_ENDPOINT, ValerixConfig


def test_defaults_are_local():
    cfg = ValerixConfig.from_context({})
    assert cfg.target == "local" and cfg.is_local
    assert cfg.stack_name == "Valerix" and cfg.stage_name == "prod"
    assert cfg.localstack_endpoint == DEFAULT_LOCALSTACK_ENDPOINT
    assert cfg.hot_reload is False and cfg.nag is True
    assert cfg.order_db_secret["dbname"] == "order_db"
    assert cfg.inventory_db_secret["dbname"] == "inventory_db"


def test_secret_context_is_json_as_given_by_make_up():
    secret = {"engine": "postgres", "host": "127.0.0.1", "port": "5544", "username": "u", "password": "p",
              "dbname": "order_db"}  # fmt: skip
    cfg = ValerixConfig.from_context({"orderDbSecret": json.dumps(secret), "hotReload": "true"})
    assert cfg.order_db_secret == {**secret, "port": 5544}
    assert cfg.hot_reload is True


@pytest.mark.parametrize(
    "context",
    [
        {"target": "gcp"},
        {"adminApiKey": "too-short"},
        {"orderDbSecret": json.dumps({"host": "", "port": 1})},
        {"logRetentionDays": "13"},
    ],
)
def test_bad_context_is_rejected(context):
    with pytest.raises(ValueError):
        cfg = ValerixConfig.from_context(context)
        from infra.constructs.service_function import retention_days

        retention_days(cfg.log_retention_days)


def test_secrets_arrive_through_the_environment_not_the_command_line():
    """`make up` hands the admin key and database secrets to `cdk synth` in its environment
    (readable only by its own user), never as `-c key=value` (visible to everyone in ps)."""
    order = {"engine": "postgres", "host": "127.0.0.1", "port": 5544, "username": "u", "password": "pw-order",
             "dbname": "order_db"}  # fmt: skip
    inventory = {**order, "password": "pw-inventory", "dbname": "inventory_db"}
    env = {"VALERIX_ADMIN_API_KEY": "k" * 40, "VALERIX_ORDER_DB_SECRET": json.dumps(order),
           "VALERIX_INVENTORY_DB_SECRET": json.dumps(inventory)}  # fmt: skip
    cfg = ValerixConfig.from_context({}, environ=env)
    assert cfg.admin_api_key == "k" * 40
    assert cfg.order_db_secret == order and cfg.inventory_db_secret == inventory


def test_context_value_wins_over_the_environment():
    cfg = ValerixConfig.from_context({"adminApiKey": "c" * 30}, environ={"VALERIX_ADMIN_API_KEY": "e" * 30})
    assert cfg.admin_api_key == "c" * 30


def test_short_admin_key_from_the_environment_is_rejected_without_echoing_it():
    with pytest.raises(ValueError) as error:
        ValerixConfig.from_context({}, environ={"VALERIX_ADMIN_API_KEY": "short-secret"})
    assert "short-secret" not in str(error.value) and "VALERIX_ADMIN_API_KEY" in str(error.value)
