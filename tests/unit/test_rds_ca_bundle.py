"""The CA bundle shipped in every function (functions/common/certs/README.md): the RDS CAs (a
direct connection to an instance) plus Amazon Root CA 1-4 (the ACM certificate of RDS Proxy)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey as EcKey
from cryptography.x509.oid import NameOID

from functions.common.settings import RDS_CA_BUNDLE

# SHA-256 recorded in functions/common/certs/README.md: a changed file must change the README too.
BUNDLE_SHA256 = "a26f3c549902ddd46f8b32286cf694766971fdc7a608b7809872b9fa5ce24a51"
RDS_CA_COUNT = 115
# Amazon Trust Services' published SHA-256 fingerprints (certifi, Node's and Debian's root stores agree).
AMAZON_ROOTS = {
    "Amazon Root CA 1": ("8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e", rsa.RSAPublicKey, 2048),
    "Amazon Root CA 2": ("1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4", rsa.RSAPublicKey, 4096),
    "Amazon Root CA 3": ("18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4", EcKey, 256),
    "Amazon Root CA 4": ("e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092", EcKey, 384),
}
REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-south-1",
    "ca-central-1",
    "sa-east-1",
)


def _certificates() -> list[x509.Certificate]:
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", RDS_CA_BUNDLE.read_bytes(), re.S)
    return [x509.load_pem_x509_certificate(p) for p in pems]


def test_bundle_is_the_recorded_file():
    assert hashlib.sha256(RDS_CA_BUNDLE.read_bytes()).hexdigest() == BUNDLE_SHA256
    assert BUNDLE_SHA256 in (RDS_CA_BUNDLE.parent / "README.md").read_text()


def test_the_rds_cas_come_first():
    certs = _certificates()
    assert len(certs) == RDS_CA_COUNT + len(AMAZON_ROOTS)
    for cert in certs[:RDS_CA_COUNT]:
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Amazon RDS"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Amazon Web Services, Inc."
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_current_g1_roots_of_the_main_regions_are_present_and_valid():
    now = dt.datetime.now(dt.UTC)
    valid = {
        c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for c in _certificates()
        if c.not_valid_before_utc <= now < c.not_valid_after_utc
    }
    for region in REGIONS:
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            assert f"Amazon RDS {region} Root CA {kind} G1" in valid


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_amazon_root_ca_1_to_4_for_rds_proxy_are_the_published_certificates():
    roots = _certificates()[RDS_CA_COUNT:]
    assert [_common_name(c) for c in roots] == list(AMAZON_ROOTS)
    now = dt.datetime.now(dt.UTC)
    for cert in roots:
        fingerprint, key_type, key_size = AMAZON_ROOTS[_common_name(cert)]
        assert cert.fingerprint(hashes.SHA256()).hex() == fingerprint
        assert cert.subject == cert.issuer  # self-signed roots, not intermediates
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Amazon"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
        assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        key = cert.public_key()
        assert isinstance(key, key_type) and key.key_size == key_size
        cert.verify_directly_issued_by(cert)  # the signature is the root's own
