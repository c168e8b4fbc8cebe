"""Synth tests of least privilege in the databases (issue 13 item 5), both targets.

Every database has four secrets (master, owner, app, reader); each function can read exactly the
secrets of the logins it uses, and nothing at run time can read a master secret. On aws, every
function that connects verifies the server certificate against the RDS CA bundle in its code.
"""

from __future__ import annotations

import json

import pytest

from functions.common.settings import RDS_CA_BUNDLE
from tests.infra.test_infra_bundle import bundle_dir
from tests.infra.test_infra_stack import admin_key_secret, as_list, env_of, ref_id, statements_of_role

SERVICES = ("order", "inventory")
ADMIN_KEY = ("admin", "key")  # the admin-key secret (infra/constructs/admin_key.py), not a database login
# function name suffix -> the logins (service, label) it must be able to read, and no other
READS = {
    "order-api": {("order", "app")},
    "order-completion": {("order", "app")},
    "order-sweeper": {("order", "app")},
    "inventory-api": {("inventory", "app"), ADMIN_KEY},
    "inventory-reserve": {("inventory", "app")},
    "inventory-queue": {("inventory", "app")},
    "order-migrate": {("order", label) for label in ("master", "owner", "app", "reader")},
    "inventory-migrate": {("inventory", label) for label in ("master", "owner", "app", "reader")},
    "backup": {("order", "reader"), ("inventory", "reader")},
    "backup-restore": {("order", "owner"), ("inventory", "owner")},
    "backup-sync": set(),
    "reconcile": {("order", "reader"), ("inventory", "reader")},  # read-only: reports, never repairs
    "gremlin": {ADMIN_KEY},
}
ROLE_NAMES = {"owner": "{}_owner", "app": "{}_app", "reader": "{}_backup"}


def _secret_id(s, value) -> str | None:
    """Logical id of the secret a Ref/ARN points at, through an RDS secret attachment."""
    logical_id = ref_id(value)
    res = s.resources.get(logical_id or "")
    if res and res["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
        return ref_id(res["Properties"]["SecretId"])
    return logical_id if res and res["Type"] == "AWS::SecretsManager::Secret" else None


def secret_logins(s) -> dict[str, tuple[str, str]]:
    """Secret logical id -> (service, label)."""
    admin_id, _ = admin_key_secret(s)
    out = {admin_id: ADMIN_KEY}
    for logical_id, res in s.of_type("AWS::SecretsManager::Secret").items():
        if logical_id == admin_id:
            continue
        props = res["Properties"]
        if "SecretString" in props:  # local master: the context's value
            value = json.loads(props["SecretString"])
            out[logical_id] = (value["dbname"].removesuffix("_db"), "master")
            continue
        template = json.loads(props["GenerateSecretString"]["SecretStringTemplate"])
        username = template["username"]
        if username == "valerix":  # aws master: RDS-generated credentials
            instance = next(
                r
                for r in s.of_type("AWS::RDS::DBInstance").values()
                if logical_id in json.dumps(r["Properties"]["MasterUserPassword"])
            )
            out[logical_id] = (instance["Properties"]["DBName"].removesuffix("_db"), "master")
            continue
        service, _, suffix = username.partition("_")
        label = {"owner": "owner", "app": "app", "backup": "reader"}[suffix]
        out[logical_id] = (service, label)
    return out


def database_logins(s) -> dict[str, tuple[str, str]]:
    return {secret: login for secret, login in secret_logins(s).items() if login != ADMIN_KEY}


def functions_by_suffix(s) -> dict[str, dict]:
    return {
        res["Properties"]["FunctionName"].removeprefix("Valerix-"): res
        for res in s.of_type("AWS::Lambda::Function").values()
        if str(res["Properties"].get("FunctionName", "")).startswith("Valerix-")
    }


def readable_secrets(s, fn: dict) -> set[str]:
    out = set()
    for st in statements_of_role(s, ref_id(fn["Properties"]["Role"])):
        if any(a.startswith("secretsmanager:") for a in as_list(st["Action"])):
            for resource in as_list(st["Resource"]):
                secret = _secret_id(s, resource)
                assert secret, f"secretsmanager access to something that is not a stack secret: {resource}"
                out.add(secret)
    return out


def test_every_database_has_a_master_owner_app_and_reader_secret(any_synth):
    logins = database_logins(any_synth)
    assert sorted(logins.values()) == sorted(
        (service, label) for service in SERVICES for label in ("master", "owner", "app", "reader")
    )
    for logical_id, (service, label) in logins.items():
        if label == "master":
            continue
        gen = any_synth.resources[logical_id]["Properties"]["GenerateSecretString"]
        template = json.loads(gen["SecretStringTemplate"])
        assert template["username"] == ROLE_NAMES[label].format(service)
        assert template["dbname"] == f"{service}_db"
        assert gen["GenerateStringKey"] == "password" and "password" not in template
        assert gen.get("PasswordLength", 32) >= 30


def test_aws_role_secrets_are_attached_to_their_own_instance(aws_synth):
    logins = database_logins(aws_synth)
    attachments = aws_synth.of_type("AWS::SecretsManager::SecretTargetAttachment").values()
    attached = {
        ref_id(a["Properties"]["SecretId"]): aws_synth.resources[ref_id(a["Properties"]["TargetId"])]
        for a in attachments
    }
    assert set(attached) == set(logins)  # each of the 8 secrets gets host/port/engine of its instance
    for secret, instance in attached.items():
        assert instance["Properties"]["DBName"] == f"{logins[secret][0]}_db"


def test_each_function_can_read_only_the_secrets_it_uses(any_synth):
    logins = secret_logins(any_synth)
    functions = functions_by_suffix(any_synth)
    assert set(functions) == set(READS)
    for suffix, fn in functions.items():
        assert {logins[s] for s in readable_secrets(any_synth, fn)} == READS[suffix], suffix


def test_no_run_time_function_can_read_a_master_secret(any_synth):
    logins = secret_logins(any_synth)
    for suffix, fn in functions_by_suffix(any_synth).items():
        masters = [s for s in readable_secrets(any_synth, fn) if logins[s][1] == "master"]
        assert not masters or suffix.endswith("-migrate"), suffix
    outputs = json.dumps(any_synth.template_dict["Outputs"])
    for secret, (_, label) in logins.items():
        if label == "master":
            assert secret not in outputs


def test_functions_log_in_with_the_secret_of_their_role(any_synth):
    logins = secret_logins(any_synth)
    functions = functions_by_suffix(any_synth)

    def login(fn: dict, variable: str) -> tuple[str, str]:
        return logins[_secret_id(any_synth, env_of(fn)[variable])]

    for suffix in (
        "order-api",
        "order-completion",
        "order-sweeper",
        "inventory-api",
        "inventory-reserve",
        "inventory-queue",
    ):
        env = env_of(functions[suffix])
        assert login(functions[suffix], "DB_SECRET_ARN") == (suffix.split("-")[0], "app")
        assert not {"DB_MASTER_SECRET_ARN", "DB_APP_SECRET_ARN", "DB_READER_SECRET_ARN"} & set(env), suffix
    for service in SERVICES:
        fn = functions[f"{service}-migrate"]
        assert login(fn, "DB_SECRET_ARN") == (service, "owner")
        assert login(fn, "DB_MASTER_SECRET_ARN") == (service, "master")
        assert login(fn, "DB_APP_SECRET_ARN") == (service, "app")
        assert login(fn, "DB_READER_SECRET_ARN") == (service, "reader")
        assert login(functions["backup"], f"{service.upper()}_DB_SECRET_ARN") == (service, "reader")
        assert login(functions["backup-restore"], f"{service.upper()}_DB_SECRET_ARN") == (service, "owner")
        assert login(functions["reconcile"], f"{service.upper()}_DB_SECRET_ARN") == (service, "reader")


def _connecting_functions(s) -> dict[str, dict]:
    return {suffix: fn for suffix, fn in functions_by_suffix(s).items() if READS[suffix] - {ADMIN_KEY}}


def test_aws_verifies_the_database_certificate_against_the_shipped_rds_bundle(aws_synth):
    for suffix, fn in _connecting_functions(aws_synth).items():
        env = env_of(fn)
        assert env["DB_TLS"] == "verify-full", suffix
        assert env["DB_CA_BUNDLE"] == "functions/common/certs/rds-ca-bundle.pem", suffix
        bundle = bundle_dir(aws_synth, fn["Properties"]["FunctionName"]) / env["DB_CA_BUNDLE"]
        assert bundle.read_bytes() == RDS_CA_BUNDLE.read_bytes()  # the file the unit tests check


def test_local_disables_tls_explicitly(local_synth):
    for suffix, fn in _connecting_functions(local_synth).items():
        assert env_of(fn)["DB_TLS"] == "disable", suffix
        assert "DB_CA_BUNDLE" not in env_of(fn)


@pytest.mark.parametrize("target", ["local", "aws"])
def test_tls_mode_is_never_left_to_a_default(target, request):
    s = request.getfixturevalue(f"{target}_synth")
    for suffix, fn in _connecting_functions(s).items():
        assert "DB_TLS" in env_of(fn), suffix
