"""AWS clients for the local cloud that can never reach real AWS by accident."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


class NotLocalEndpointError(RuntimeError):
    pass


def assert_local_endpoint(url: str) -> str:
    """Return `url` if every address its host resolves to is loopback; raise otherwise."""
    host = urlparse(url).hostname
    if not host:
        raise NotLocalEndpointError(f"{url!r} has no host")
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        raise NotLocalEndpointError(f"refusing to use the real AWS endpoint {url!r}")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise NotLocalEndpointError(f"{host!r} does not resolve: {exc}") from exc
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote:
        raise NotLocalEndpointError(
            f"refusing to use {url!r}: {host} resolves to non-loopback {sorted(remote)}; "
            "the local cloud only ever runs on this machine"
        )
    return url


def local_client(service: str, endpoint_url: str, region: str = REGION, **config: Any) -> Any:
    assert_local_endpoint(endpoint_url)
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, **config),
        **LOCAL_CREDENTIALS,
    )
