"""Which network interface the local cloud listens on: loopback, unless the user opts in.

LocalStack accepts any credentials, and our Lambda executor runs function code as local
processes of the user who ran `make up`. Whoever can reach LocalStack's port can therefore run
code as that user, read every secret and rewrite the gremlin. So every socket the local cloud
opens binds to 127.0.0.1; `VALERIX_LISTEN_ALL=1` is the one, explicit way to let other
machines in (e.g. to open the dashboard from a phone), and it is announced loudly.

What the opt-in opens: LocalStack's gateway (every emulated AWS API, the REST API, the S3
website) and the metrics exporter. The two Postgres servers and DynamoDB Local stay on
loopback whatever the variable says: only the functions and LocalStack talk to them.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import TextIO

ENV_VAR = "VALERIX_LISTEN_ALL"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 -- the opt-in (VALERIX_LISTEN_ALL=1), named once


def accepts_connections(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """Whether something answers a TCP connect on host:port (ours or anyone's)."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


class PortTaken(RuntimeError):
    """Another program answers on a port one of our servers is about to take."""


def refuse_if_taken(port: int, env_var: str) -> None:
    """Before starting a server of ours: a program already answering there would pass our health
    check in its place (another checkout's local cloud: `make up` would deploy into it)."""
    if accepts_connections(port):
        raise PortTaken(
            f"port {port} is taken by another program (another checkout's `make up`? `make down` there), "
            f"or set {env_var}"
        )


def listen_all(environ: dict[str, str] | None = None) -> bool:
    """True only for an explicit yes (1/true/yes); anything else keeps loopback."""
    value = (environ if environ is not None else os.environ).get(ENV_VAR, "")
    return value.strip().lower() in {"1", "true", "yes"}


def bind_host(environ: dict[str, str] | None = None) -> str:
    """The address the exposable servers (LocalStack's gateway, the exporter) bind to."""
    return ALL_INTERFACES if listen_all(environ) else LOOPBACK


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def exposure_warning(localstack_port: int, exporter_port: int) -> str:
    """What `VALERIX_LISTEN_ALL=1` exposes, in words a user can act on."""
    return (
        f"WARNING: {ENV_VAR}=1: the local cloud listens on every network interface.\n"
        f"  Anyone who can reach this machine (same Wi-Fi, same LAN) can use:\n"
        f"  * LocalStack on port {localstack_port}: it accepts ANY credentials, so they can create and\n"
        f"    invoke Lambda functions that run as local processes of user "
        f"'{_user()}' on this machine, read the database passwords and the admin API key from\n"
        f"    Secrets Manager, rewrite the gremlin in SSM, and read or change every queue, table and bucket;\n"
        f"  * the metrics exporter on port {exporter_port} (order and latency metrics).\n"
        f"  The Postgres servers and DynamoDB Local stay on 127.0.0.1.\n"
        f"  Unset {ENV_VAR} and re-run `make up` to listen on 127.0.0.1 only."
    )


def announce(localstack_port: int, exporter_port: int, stream: TextIO | None = None) -> bool:
    """Print the exposure warning when the opt-in is set; returns whether it was."""
    if not listen_all():
        return False
    print(exposure_warning(localstack_port, exporter_port), file=stream or sys.stderr, flush=True)
    return True


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())
