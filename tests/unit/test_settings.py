"""Typed settings: parsed once, clear errors naming the variable."""

from __future__ import annotations

import pytest

from functions.common.settings import GremlinSettings, Settings, SettingsError


def test_defaults_and_parsing():
    s = Settings.from_env({"INVENTORY_RESERVE_FUNCTION": " Valerix-inventory-reserve ", "DB_SECRET_ARN": "arn:s"})
    assert s.inventory_reserve_function == "Valerix-inventory-reserve"
    assert s.inventory_call_budget_ms == 2000
    assert s.inventory_call_budget_seconds == 2.0
    assert s.circuit_failure_threshold == 5
    assert s.circuit_recovery_timeout_seconds == 10
    assert s.gremlin == GremlinSettings(parameter_name=None, state_table=None, stop_alarms=(), cache_seconds=1)
    assert s.db_secret_arn == "arn:s"


@pytest.mark.parametrize(
    "name",
    [
        "DB_SECRET_ARN",
        "INVENTORY_QUEUE_URL",
        "COMPLETION_QUEUE_URL",
        "IDEMPOTENCY_TABLE",
        "CIRCUIT_BREAKER_TABLE",
        "INVENTORY_RESERVE_FUNCTION",
    ],
)
def test_missing_required_variable_is_named(name):
    s = Settings.from_env({})
    with pytest.raises(SettingsError, match=name):
        getattr(s, name.lower())


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_malformed_number_is_named(value):
    with pytest.raises(SettingsError, match="INVENTORY_CALL_BUDGET_MS"):
        Settings.from_env({"INVENTORY_CALL_BUDGET_MS": value})


def test_cors_origins_parsed():
    s = Settings.from_env({"CORS_ALLOW_ORIGINS": "http://a.example, http://b.example/ ,"})
    assert s.cors_allow_origins == ("http://a.example", "http://b.example")


def test_admin_key_and_health_cache_settings():
    s = Settings.from_env({"ADMIN_KEY_SECRET_ARN": "arn:admin"})
    assert s.admin_key_secret_arn == "arn:admin"
    assert s.admin_key_cache_seconds == 60 and s.health_cache_seconds == 5
    s = Settings.from_env({"ADMIN_KEY_CACHE_SECONDS": "0", "HEALTH_CACHE_SECONDS": "2"})
    assert s.admin_key_cache_seconds == 0 and s.health_cache_seconds == 2
    with pytest.raises(SettingsError, match="ADMIN_KEY_SECRET_ARN"):
        _ = s.admin_key_secret_arn
    with pytest.raises(SettingsError, match="HEALTH_CACHE_SECONDS"):
        Settings.from_env({"HEALTH_CACHE_SECONDS": "-1"})


def test_the_gremlin_section():
    s = Settings.from_env(
        {
            "GREMLIN_PARAMETER_NAME": "/valerix/gremlin",
            "GREMLIN_STATE_TABLE": "state",
            "GREMLIN_STOP_ALARMS": "a-5xx, b-dlq ,",
            "GREMLIN_CACHE_SECONDS": "0",
        }
    )
    assert s.gremlin == GremlinSettings("/valerix/gremlin", "state", ("a-5xx", "b-dlq"), 0)
    with pytest.raises(SettingsError, match="GREMLIN_CACHE_SECONDS"):
        Settings.from_env({"GREMLIN_CACHE_SECONDS": "soon"})


def test_parsed_once_per_environment(monkeypatch):
    from functions.common.settings import get_settings

    monkeypatch.setenv("INVENTORY_CALL_BUDGET_MS", "1500")
    get_settings.cache_clear()
    first = get_settings()
    monkeypatch.setenv("INVENTORY_CALL_BUDGET_MS", "900")
    assert get_settings() is first and first.inventory_call_budget_ms == 1500


def test_only_the_settings_module_reads_the_environment():
    """Every function's configuration goes through a parsed settings model (issue 16)."""
    import re
    from pathlib import Path

    import functions

    root = Path(functions.__file__).parent
    readers = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if re.search(r"\bos\.(getenv|environ)\b|\bgetenv\(", path.read_text())
    }
    assert readers == {"common/settings.py"}


def test_a_missing_variable_of_the_backup_and_reconcile_functions_is_named():
    from functions.backup.settings import BackupSettings
    from functions.reconcile.settings import ReconcileSettings

    with pytest.raises(SettingsError, match=r"BACKUP_KMS_KEY_ID is not set .*backup functions"):
        BackupSettings.from_env({"BACKUP_BUCKET": "b", "EXTERNAL_BUCKET": "e"})
    with pytest.raises(SettingsError, match="DB_TLS must be one of verify-full, disable"):
        BackupSettings.from_env(
            {"BACKUP_BUCKET": "b", "EXTERNAL_BUCKET": "e", "BACKUP_KMS_KEY_ID": "k", "DB_TLS": "maybe"}
        )
    with pytest.raises(SettingsError, match=r"DLQ_URLS is not set .*reconcile function"):
        ReconcileSettings.from_env({"ORDER_DB_SECRET_ARN": "o", "INVENTORY_DB_SECRET_ARN": "i"})
