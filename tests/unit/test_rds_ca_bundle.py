"""The RDS CA bundle shipped in every function (functions/common/certs/README.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from functions.common.settings import RDS_CA_BUNDLE

# SHA-256 recorded in functions/common/certs/README.md: a changed file must change the README too.
BUNDLE_SHA256 = "fefac91d6800404461cece76724bc0a2383f4f556a1c9beb0813fac6f2e1e49f"
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1", "eu-north-1",
           "ap-northeast-1", "ap-southeast-1", "ap-southeast-2", "ap-south-1", "ca-central-1", "sa-east-1")


def _certificates() -> list[x509.Certificate]:
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", RDS_CA_BUNDLE.read_bytes(), re.S)
    return [x509.load_pem_x509_certificate(p) for p in pems]


def test_bundle_is_the_recorded_file():
    assert hashlib.sha256(RDS_CA_BUNDLE.read_bytes()).hexdigest() == BUNDLE_SHA256
    assert BUNDLE_SHA256 in (RDS_CA_BUNDLE.parent / "README.md").read_text()


def test_every_certificate_is_an_amazon_rds_ca():
    certs = _certificates()
    assert len(certs) == 115
    for cert in certs:
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Amazon RDS"
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Amazon Web Services, Inc."
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_current_g1_roots_of_the_main_regions_are_present_and_valid():
    now = dt.datetime.now(dt.UTC)
    valid = {c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
             for c in _certificates() if c.not_valid_before_utc <= now < c.not_valid_after_utc}
    for region in REGIONS:
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            assert f"Amazon RDS {region} Root CA {kind} G1" in valid
