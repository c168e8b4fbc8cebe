"""Runtime parity (issue 15): every function of the target=aws template initialises from the AWS
bundle in a fresh interpreter, under the closest interpreter this machine has.

On a machine with the declared runtime's Python (3.12) that is the AWS bundle itself; elsewhere its
cp312 wheels cannot load and the bundle's twin with the same pins for this Python stands in
(scripts/aws_init.py says which). Initialising = importing the handler's module and looking the
handler up, as the Lambda runtime does at INIT, with the function's variables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts import aws_init

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle() -> aws_init.Bundle:
    return aws_init.bundle_for(sys.executable)


def test_the_bundle_holds_no_package_of_this_machine(bundle):
    # only the bundle is on the child's path: a module missing from it would fail there, not be
    # found in the project virtualenv
    assert not (bundle.path / ".venv").exists()
    assert (bundle.path / "functions").is_dir() and (bundle.path / "boto3").is_dir()


def test_every_function_initialises_from_the_bundle(aws_synth, bundle):
    functions = aws_init.template_functions(aws_synth.template_dict)
    assert {"Valerix-order-api", "Valerix-inventory-reserve", "Valerix-inventory-queue", "Valerix-gremlin"} <= set(
        functions
    )
    for name, (handler, env) in functions.items():
        probe = aws_init.init_once(bundle, handler, aws_init.lambda_env(name, env))
        assert probe["python"] == ".".join(map(str, sys.version_info[:3])), name
        # the queue, reserve and migrate functions never pay for the web framework
        assert probe["fastapi"] == handler.endswith(".api_handler"), (name, handler)


def test_a_handler_that_is_not_there_fails_the_probe(bundle):
    with pytest.raises(RuntimeError, match="failed to initialise"):
        aws_init.init_once(bundle, "functions.order.handler.no_such_handler", aws_init.lambda_env("x"))


def test_the_bundle_note_says_which_interpreter(bundle):
    version = "{}.{}".format(*sys.version_info[:2])
    assert f"Python {version}" in bundle.note
    if version != aws_init.bundling.LAMBDA_PYTHON_VERSION:
        assert "cannot load" in bundle.note


def test_make_up_names_the_aws_runtime_the_stack_declares():
    from infra.constructs.service_function import RUNTIME
    from valerix_localcloud import cli

    assert RUNTIME.name == cli.AWS_LAMBDA_RUNTIME
    assert cli.lambda_interpreter(Path(sys.executable)).startswith(f"Python {sys.version.split()[0]} (")
