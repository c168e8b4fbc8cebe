"""DB_TLS / DB_CA_BUNDLE parsing and the TLS context the functions use (no database needed)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from functions.common.db import DatabaseUnavailable, ssl_context
from functions.common.settings import ASSET_ROOT, RDS_CA_BUNDLE, DbTls, Settings, SettingsError


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
    subjects = [dict(x[0] for x in ca["subject"]) for ca in context.get_ca_certs()]
    rds_units = {s.get("organizationalUnitName") for s in subjects if s.get("organizationName") != "Amazon"}
    assert rds_units == {"Amazon RDS"}
    assert sorted(s["commonName"] for s in subjects if s.get("organizationName") == "Amazon") == [
        f"Amazon Root CA {n}" for n in range(1, 5)]


def test_disable_means_no_tls_at_all():
    assert ssl_context(DbTls("disable")) is False


def test_missing_bundle_is_an_error_not_a_fallback(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="DB_CA_BUNDLE"):
        ssl_context(DbTls("verify-full", tmp_path / "nope.pem"))
