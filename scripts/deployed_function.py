"""Invoke a deployed Valerix function once and read its answer — shared by the on-demand scripts
(`make backup`/`restore`, `make reconcile`).

Target: the local cloud by default (endpoint and function names from .valerix/outputs.json,
written by `make up`), or AWS with your credentials (function names from the CloudFormation
stack's outputs). One attempt only: an SDK retry would run a slow backup, sync or check twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
OUTPUTS_FILE = REPO / ".valerix" / "outputs.json"


class CliError(RuntimeError):
    pass


def single_attempt(read_timeout: int) -> Config:
    # `total_max_attempts`: botocore reads a client Config's `max_attempts` as the number of retries.
    return Config(read_timeout=read_timeout, connect_timeout=10, retries={"total_max_attempts": 1, "mode": "standard"})


def lambda_client_and_outputs(*, use_aws: bool, stack_name: str, config: Config) -> tuple[Any, dict[str, str]]:
    """(Lambda client, stack outputs) for AWS or the local cloud."""
    if use_aws:
        cfn = boto3.client("cloudformation")
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        return boto3.client("lambda", config=config), outputs
    if not OUTPUTS_FILE.exists():
        raise CliError(f"{OUTPUTS_FILE.relative_to(REPO)} not found: start the local cloud with `make up` first")
    data = json.loads(OUTPUTS_FILE.read_text())
    from valerix_localcloud.clients import LOCAL_CREDENTIALS, assert_local_endpoint

    # Not local_client(): its SDK retries would re-invoke a function whose answer was slow.
    client = boto3.client(
        "lambda",
        endpoint_url=assert_local_endpoint(data["endpoint_url"]),
        region_name=data.get("region") or "us-east-1",
        config=config,
        **LOCAL_CREDENTIALS,
    )
    return client, data.get("stack", {})


def invoke(client: Any, function_name: str, payload: dict) -> Any:
    """The function's answer; a function error becomes a CliError naming its type and message."""
    response = client.invoke(
        FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
    )
    body = response["Payload"].read()
    try:
        result = json.loads(body) if body else None
    except ValueError:
        result = body.decode(errors="replace")
    if response.get("FunctionError"):
        message = result.get("errorMessage") if isinstance(result, dict) else result
        kind = result.get("errorType") if isinstance(result, dict) else "error"
        raise CliError(f"{function_name} failed ({kind}): {message}")
    return result
