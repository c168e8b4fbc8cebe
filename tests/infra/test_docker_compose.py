"""The Docker path (docker-compose.localstack.yml), checked as far as a machine without a Docker
engine allows: the file is valid against the Compose Specification schema (the one check-jsonschema
ships), what it references exists, its LocalStack image is the release the embedded cloud pins,
and the deploy command at its top synthesizes with `cdklocal` into an app that can run there
(the functions carry their dependencies; the database secrets point at the compose services)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.outputs import TARGET

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.localstack.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def documented_commands() -> list[list[str]]:
    """The shell lines in the file's leading comment, continuation lines joined, split at `&&`."""
    lines = []
    for line in COMPOSE_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    text = "\n".join(lines).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if line.startswith(("docker ", "npx ")):
            commands += [shlex.split(part) for part in line.split("&&")]
    return commands


def deploy_command() -> list[str]:
    (deploy,) = [c for c in documented_commands() if c[:3] == ["npx", "cdklocal", "deploy"]]
    return deploy


def context_of(argv: list[str]) -> dict[str, str]:
    ctx = {}
    for flag, value in itertools.pairwise(argv):
        if flag in ("-c", "--context"):
            key, _, val = value.partition("=")
            ctx[key] = val
    return ctx


# ------------------------------------------------------------------------------ the file itself
def test_compose_file_is_valid_against_the_compose_spec():
    result = validate(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_an_invalid_compose_file(tmp_path):
    broken = compose()
    broken["services"]["localstack"]["ports"] = {"4566": "4566"}  # a mapping where a list belongs
    broken["services"]["order-db"]["restart_policy"] = "always"  # not a service key
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0
    assert "ports" in result.stdout + result.stderr


def test_everything_the_file_references_exists():
    doc = compose()
    networks, volumes = set(doc.get("networks", {})), set(doc.get("volumes", {}))
    for name, service in doc["services"].items():
        assert set(service.get("networks", [])) <= networks, name
        assert set(service.get("depends_on", [])) <= set(doc["services"]), name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith(("./", "/")) and source != "/var/run/docker.sock":
                assert (REPO_ROOT / source).exists(), f"{name}: {source} does not exist"
            elif not source.startswith("/"):
                assert source in volumes, f"{name}: volume {source} is not declared"
        if "build" in service:
            assert (REPO_ROOT / service["build"] / "Dockerfile").is_file(), name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_localstack_image_is_the_pinned_localstack_core():
    pins = (REPO_ROOT / "requirements-localstack.txt").read_text()
    # a lock line: `localstack-core==4.9.2 \` and its hashes below
    (pinned,) = re.findall(r"^localstack-core==([\w.]+)[\s\\]*$", pins, re.MULTILINE)
    image = compose()["services"]["localstack"]["image"]
    assert image == f"localstack/localstack:{pinned}"


def test_lambda_containers_join_the_network_the_databases_are_on():
    doc = compose()
    env = dict(item.split("=", 1) for item in doc["services"]["localstack"]["environment"])
    network = env["LAMBDA_DOCKER_NETWORK"]
    assert doc["networks"]["valerix"]["name"] == network
    for db in ("order-db", "inventory-db"):
        assert "valerix" in doc["services"][db]["networks"]


# ------------------------------------------------------------------------------ the documented command
def test_the_documented_commands_are_what_the_readme_says():
    commands = documented_commands()
    assert commands[0] == ["docker", "compose", "-f", "docker-compose.localstack.yml", "up", "-d"]
    assert ["npx", "cdklocal", "bootstrap"] in commands
    assert deploy_command()[:3] == ["npx", "cdklocal", "deploy"]


def test_the_command_points_at_the_compose_services():
    doc = compose()
    ctx = context_of(deploy_command())
    assert ctx["target"] == "local" and ctx["lambdaDependencies"] == "true"
    for key, service in (("orderDbSecret", "order-db"), ("inventoryDbSecret", "inventory-db")):
        secret = json.loads(ctx[key])
        env = doc["services"][service]["environment"]
        assert secret["host"] == service and secret["port"] == 5432  # the container port, on the network
        assert (secret["username"], secret["password"], secret["dbname"]) == (
            env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])  # fmt: skip
    endpoint = ctx["localstackEndpoint"]
    assert endpoint.endswith(":4566") and "127.0.0.1:4566:4566" in doc["services"]["localstack"]["ports"]


@pytest.fixture(scope="module")
def documented_synth(tmp_path_factory) -> Path:
    """`npx cdklocal synth` with exactly the context of the documented deploy command."""
    out = tmp_path_factory.mktemp("cdklocal-compose")
    argv = ["npx", "--no-install", "cdklocal", "synth", "-q", "-o", str(out), *deploy_command()[3:]]
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "CDK_DISABLE_CLI_TELEMETRY": "true",
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}  # fmt: skip
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_documented_command_synthesizes_an_app_that_can_run_in_docker(documented_synth):
    template = json.loads((documented_synth / "Valerix.template.json").read_text())
    resources = template["Resources"]
    secrets = [
        json.loads(r["Properties"]["SecretString"])
        for r in resources.values()
        if r["Type"] == "AWS::SecretsManager::Secret" and "host" in str(r["Properties"].get("SecretString"))
    ]
    assert sorted(s["host"] for s in secrets) == ["inventory-db", "order-db"]
    # LocalStack's Docker executor runs the functions in the bare python3.12 image: the asset
    # must carry the dependencies, not only functions/.
    functions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions and {r["Properties"]["Runtime"] for r in functions} == {"python3.12"}
    assets = json.loads((documented_synth / "Valerix.assets.json").read_text())["files"]
    keys = {r["Properties"]["Code"]["S3Key"] for r in functions}
    for key in keys:
        (asset,) = [a for h, a in assets.items() if key.startswith(h)]
        root = documented_synth / asset["source"]["path"]
        assert (root / "functions").is_dir()
        for package in ("fastapi", "mangum", "aws_lambda_powertools", "pg8000"):
            assert (root / package).is_dir(), f"{package} is not in the function bundle"
    assert template["Outputs"][TARGET]["Value"] == "local"
