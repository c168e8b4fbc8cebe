"""DB_TLS / DB_CA_BUNDLE parsing and the TLS context the functions use (no database needed)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from functions.common import db
from functions.common.db import DatabaseUnavailable, ssl_context
from functions.common.settings import ASSET_ROOT, RDS_CA_BUNDLE, DbPool, DbTls, Settings, SettingsError


def test_default_is_verify_full_against_the_shipped_rds_bundle():
    tls = Settings.from_env({}).db_tls
    assert tls == DbTls("verify-full", RDS_CA_BUNDLE)
    assert RDS_CA_BUNDLE.is_file()


def test_relative_bundle_path_is_relative_to_the_asset_root():
    tls = DbTls.from_env({"DB_TLS": "verify-full", "DB_CA_BUNDLE": "functions/common/certs/rds-ca-bundle.pem"})
    assert tls.ca_bundle == ASSET_ROOT / "functions/common/certs/rds-ca-bundle.pem" == RDS_CA_BUNDLE
    assert DbTls.from_env({"DB_CA_BUNDLE": "/etc/ca.pem"}).ca_bundle == Path("/etc/ca.pem")


@pytest.mark.parametrize("value", ["require", "off", "no", "verify-ca", "prefer"])
def test_only_the_two_explicit_modes_are_accepted(value):
    with pytest.raises(SettingsError, match="DB_TLS"):
        Settings.from_env({"DB_TLS": value})


def test_verify_full_context_checks_chain_and_host_name():
    context = ssl_context(DbTls("verify-full", RDS_CA_BUNDLE))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # only the RDS CAs and the Amazon roots RDS Proxy's certificate chains to, not the system store
    certificates: list[Any] = context.get_ca_certs()
    subjects = [dict(x[0] for x in ca["subject"]) for ca in certificates]
    rds_units = {s.get("organizationalUnitName") for s in subjects if s.get("organizationName") != "Amazon"}
    assert rds_units == {"Amazon RDS"}
    assert sorted(s["commonName"] for s in subjects if s.get("organizationName") == "Amazon") == [
        f"Amazon Root CA {n}" for n in range(1, 5)
    ]


def test_disable_means_no_tls_at_all():
    assert ssl_context(DbTls("disable")) is False


def test_missing_bundle_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="DB_CA_BUNDLE"):
        ssl_context(DbTls("verify-full", tmp_path / "nope.pem"))


# ---------------------------------------------------------------------- DB_POOL_MAX / DB_PROXY_ENDPOINT


def test_pool_settings_are_parsed_once_with_defaults():
    assert Settings.from_env({}).db_pool == DbPool(max_open=10, wait_seconds=10.0, proxy_endpoint=None)
    pool = Settings.from_env(
        {
            "DB_POOL_MAX": "2",
            "DB_POOL_WAIT_SECONDS": "3",
            "DB_PROXY_ENDPOINT": " valerix-order.proxy-abc.eu-central-1.rds.amazonaws.com ",
        }
    ).db_pool
    assert pool == DbPool(2, 3.0, "valerix-order.proxy-abc.eu-central-1.rds.amazonaws.com")


@pytest.mark.parametrize(
    ("name", "value"), [("DB_POOL_MAX", "0"), ("DB_POOL_MAX", "two"), ("DB_POOL_WAIT_SECONDS", "-1")]
)
def test_bad_pool_settings_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_proxy_endpoint_replaces_the_secrets_host(monkeypatch):
    """Run-time functions reach RDS Proxy with the login of their secret (whose host is the
    instance): connect() must dial the proxy, and verify-full checks the proxy's name."""
    calls = []
    monkeypatch.setattr(db.pg8000.native, "Connection", lambda **kwargs: calls.append(kwargs) or object())
    secret = {
        "host": "valerix-order-db.abc.eu-central-1.rds.amazonaws.com",
        "port": 5432,
        "username": "order_app",
        "password": "pw",
        "dbname": "order_db",
    }
    proxy = "valerix-order.proxy-abc.eu-central-1.rds.amazonaws.com"
    db.connect(secret, tls=DbTls("disable"), host=proxy)
    db.connect(secret, tls=DbTls("disable"))
    assert [c["host"] for c in calls] == [proxy, secret["host"]]
    assert calls[0]["user"] == "order_app" and calls[0]["database"] == "order_db"
