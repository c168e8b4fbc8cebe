"""The queue, reserve and migrate functions share a module with an API handler; they must not pay
for FastAPI at INIT (issue 15: aws_init_ms). The API handler is still built when looked up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _printed(code: str) -> Any:
    """What `code` prints last (JSON), run in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _modules_after(code: str, modules: tuple[str, ...] = ("fastapi",)) -> dict:
    """Which of `modules` a fresh interpreter has imported after running `code`."""
    return _printed(f"import json, sys\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {modules!r}}}))")


API_MODULES = ["functions.order.handler", "functions.inventory.handler", "functions.gremlin.handler"]


@pytest.mark.parametrize(
    "module, handler",
    [
        ("functions.order.handler", "completion_handler"),
        ("functions.order.handler", "sweeper_handler"),
        ("functions.inventory.handler", "reserve_handler"),
        ("functions.inventory.handler", "queue_handler"),
    ],
)
def test_a_non_api_handler_does_not_import_fastapi(module, handler):
    assert _modules_after(f"import {module} as m\nm.{handler}") == {"fastapi": False}


@pytest.mark.parametrize("module", ["functions.order.handler", "functions.inventory.handler"])
def test_the_api_handler_is_built_when_looked_up(module):
    assert _modules_after(f"import {module} as m\nassert callable(m.api_handler) and m.api_handler.app") == {
        "fastapi": True
    }


@pytest.mark.parametrize("module", API_MODULES)
def test_an_api_does_not_import_pydantic_v1(module):
    """FastAPI's check for pydantic.v1 models imported pydantic.v1 at every API's INIT."""
    assert _modules_after(f"import {module} as m\nassert m.api_handler.app", ("pydantic.v1",)) == {"pydantic.v1": False}


def test_a_pydantic_v1_model_is_still_refused():
    """...while FastAPI still refuses a v1 model, on a route and in an answer."""
    code = """
import warnings
warnings.simplefilter("ignore")
from fastapi.encoders import jsonable_encoder
from functions.common.api import create_app
from pydantic import v1

class Legacy(v1.BaseModel):
    a: int

refused = []
try:
    app = create_app("x")

    @app.post("/legacy")
    def legacy(body: Legacy) -> None: ...
except Exception as exc:
    refused.append(type(exc).__name__)
try:
    jsonable_encoder(Legacy(a=1))
except Exception as exc:
    refused.append(type(exc).__name__)
print(refused, file=sys.stderr)
assert refused == ["PydanticV1NotSupportedError"] * 2, refused
"""
    assert _modules_after(code, ("pydantic.v1",)) == {"pydantic.v1": True}


@pytest.mark.parametrize("module", API_MODULES)
def test_an_api_does_not_build_the_openapi_models_at_init(module):
    """FastAPI's OpenAPI document models (functions/common/fastapi_import.py) are not built at
    INIT, nor by a request; only `app.openapi()` builds them."""
    code = f"""
import json
import {module} as m
app = m.api_handler.app  # the runtime's lookup: INIT
from fastapi.openapi.models import OpenAPI
at_init = OpenAPI.__pydantic_complete__
app.openapi()
print(json.dumps([at_init, OpenAPI.__pydantic_complete__]))
"""
    assert _printed(code) == [False, True]


@pytest.mark.parametrize("module", API_MODULES)
def test_the_openapi_document_is_the_same(module):
    """Deferred or not, the models describe the same document (the fuzz tests read it)."""
    code = f"""
import json
{{first}}
import {module} as m
print(json.dumps(m.api_handler.app.openapi(), sort_keys=True))
"""
    deferred = _printed(code.format(first=""))
    built_at_import = _printed(code.format(first="import fastapi"))
    assert deferred == built_at_import and deferred["paths"]


RESERVATION_PATH = ("functions.inventory.reserve_api", "functions.gremlin.injector", "functions.gremlin.document")


def test_the_inventory_api_does_not_import_the_reservation_path():
    """Not the reserve function's answers, nor the gremlin's injector: the API is not wired to it."""
    loaded = _modules_after("import functions.inventory.handler as m\nassert m.api_handler.app", RESERVATION_PATH)
    assert loaded == dict.fromkeys(RESERVATION_PATH, False)


def test_the_reserve_function_loads_its_path_at_init():
    """...while the reserve function's INIT (the handler lookup) loads all of it, so its first
    reservation does not."""
    loaded = _modules_after(
        "import functions.inventory.handler as m\nassert callable(m.reserve_handler)", RESERVATION_PATH
    )
    assert loaded == dict.fromkeys(RESERVATION_PATH, True)


def test_an_unknown_attribute_is_still_an_attribute_error():
    import functions.order.handler as handler

    with pytest.raises(AttributeError, match="no_such_handler"):
        handler.no_such_handler  # noqa: B018 -- the attribute access is the test


def _prewarmed(extra_env: dict) -> bool:
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "CIRCUIT_BREAKER_TABLE": "circuit",
        **extra_env,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import functions.order.handler\n"
            "from functions.order import inventory_client\n"
            "print(inventory_client.get_client.cache_info().currsize == 1)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_the_order_api_builds_its_inventory_client_at_init():
    # the first order's 2 s budget is not spent loading botocore's Lambda model
    assert _prewarmed({"INVENTORY_RESERVE_FUNCTION": "reserve"})


def test_the_other_order_functions_do_not():
    assert not _prewarmed({})
