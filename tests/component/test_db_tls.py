"""TLS to Postgres (issue 13 item 5): `DB_TLS=verify-full` really verifies, `disable` is explicit.

A real Postgres server with TLS on, its certificate issued by a test CA for 127.0.0.1 only. The
functions' own connect path (functions.common.db.connect, used by the pool, the migrate and the
backup functions) must accept it only with that CA and that host name, and must never fall back
to plain text.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from functions.common.db import DatabaseUnavailable, connect
from functions.common.settings import RDS_CA_BUNDLE, DbTls
from tests.conftest import TEST_STATE
from valerix_localcloud.postgres import PostgresServer, _chown_to_owner


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, issuer_key, issuer: str, public_key, *, ca: bool, san: list | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A Postgres server with TLS on (certificate for IP 127.0.0.1 from a throwaway CA)."""
    pki = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Valerix test CA", ca_key, "Valerix test CA", ca_key.public_key(), ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert(
        "127.0.0.1",
        ca_key,
        "Valerix test CA",
        server_key.public_key(),
        ca=False,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("Someone else's CA", other_key, "Someone else's CA", other_key.public_key(), ca=True)
    (pki / "ca.pem").write_bytes(_pem(ca))
    (pki / "other-ca.pem").write_bytes(_pem(other_ca))

    server = PostgresServer(TEST_STATE / "tls", "tls_db", fsync=False)
    server.init()
    (server.data_dir / "server.crt").write_bytes(_pem(server_cert))
    key_file = server.data_dir / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(key_file, 0o600)
    with open(server.data_dir / "postgresql.conf", "a") as conf:
        conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    _chown_to_owner(server.data_dir)
    server.start()
    yield server, pki
    server.destroy()


def _secret(server: PostgresServer, host: str = "127.0.0.1") -> dict:
    return {**server.secret(), "host": host}


def test_verify_full_accepts_the_right_ca_and_host(tls_server):
    server, pki = tls_server
    conn = connect(_secret(server), tls=DbTls("verify-full", pki / "ca.pem"))
    try:
        assert conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [[True]]
    finally:
        conn.close()


@pytest.mark.parametrize("ca", ["other-ca.pem", "rds"])
def test_verify_full_refuses_a_certificate_from_another_ca(tls_server, ca):
    server, pki = tls_server
    bundle = RDS_CA_BUNDLE if ca == "rds" else pki / ca
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        connect(_secret(server), tls=DbTls("verify-full", bundle))


def test_verify_full_refuses_a_certificate_for_another_host(tls_server):
    server, pki = tls_server
    # "localhost" reaches the same server, but the certificate names only 127.0.0.1
    with pytest.raises(Exception, match=r"Hostname mismatch|doesn't match|IP address mismatch"):
        connect(_secret(server, host="localhost"), tls=DbTls("verify-full", pki / "ca.pem"))


def test_verify_full_never_falls_back_to_plain_text(postgres_servers):
    # The ordinary test servers have no TLS: verify-full must fail, not connect unencrypted.
    with pytest.raises(Exception, match=r"(?i)ssl"):
        connect(postgres_servers["order"].secret(), tls=DbTls("verify-full", RDS_CA_BUNDLE))


def test_disable_is_plain_text_only_when_configured(postgres_servers):
    conn = connect(postgres_servers["order"].secret(), tls=DbTls("disable"))
    try:
        assert conn.run("SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl") == [[0]]
    finally:
        conn.close()


def test_a_missing_ca_bundle_is_refused_before_connecting(postgres_servers, tmp_path):
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        connect(postgres_servers["order"].secret(), tls=DbTls("verify-full", Path(tmp_path / "missing.pem")))
