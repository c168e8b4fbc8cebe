"""Inside LocalStack: every socket it opens binds where GATEWAY_LISTEN says (127.0.0.1 for us).

Two places in localstack-core 4.9.2 ignore the host they are given, so LocalStack listened on
every interface although started with `GATEWAY_LISTEN=127.0.0.1:<port>`:

* the default gateway server (`runtime/server/twisted.py`) builds a `TCP4ServerEndpoint` without
  its `interface` ("TODO: interface = host?"). Here `register` passes the host. (Hypercorn, the
  other gateway server, honours the host but is slower under load and adds `Connection: close`
  to every answer; the twisted server is what the bench numbers were measured with.)
* DynamoDB Local (`services/dynamodb/server.py`) is started with `-jar DynamoDBLocal.jar`, whose
  Jetty binds every interface and has no host option. Here LocalStack starts our loopback main
  instead (`java/ValerixLoopbackDynamoDBLocal.java`, built by `make up` beside the jar).

Applied from an `on_infra_start` hook, which LocalStack runs before it registers the gateway
server and long before DynamoDB Local starts (on the first DynamoDB call). Idempotent.
"""

from __future__ import annotations

import logging
import os
from typing import Any

LOG = logging.getLogger(__name__)
LAUNCHER_JAR = "valerix-loopback-launcher.jar"  # localstack_host.LOOPBACK_LAUNCHER_JAR

_applied = False


def apply() -> None:
    global _applied  # noqa: PLW0603 -- once per process, like the patches themselves
    if _applied:
        return
    _bind_twisted_gateway_to_host()
    _start_dynamodb_local_on_loopback()
    _applied = True


def _bind_twisted_gateway_to_host() -> None:
    from localstack.runtime.server.twisted import TwistedRuntimeServer

    def register(self: Any, gateway: Any, listen: Any, ssl_creds: tuple[str, str] | None = None) -> None:
        # Upstream's register, with `interface=host` for IPv4 too.
        from localstack import config
        from localstack.aws.serving.twisted import TLSMultiplexerFactory
        from rolo.serving.twisted import TwistedGateway
        from twisted.internet import endpoints, reactor, ssl

        # Typed Any, as upstream: twisted's zope interfaces are not what mypy sees of these classes.
        site: Any = TwistedGateway(gateway)
        protocol_factory: Any
        if ssl_creds:
            cert_file_name, key_file_name = ssl_creds
            context_factory: Any = ssl.DefaultOpenSSLContextFactory(key_file_name, cert_file_name)
            context_factory.getContext().use_certificate_chain_file(cert_file_name)
            protocol_factory = TLSMultiplexerFactory(context_factory, False, site)
        else:
            protocol_factory = site
        for host_and_port in listen:
            endpoint_class = (
                endpoints.TCP6ServerEndpoint
                if config.is_ipv6_address(host_and_port.host)
                else endpoints.TCP4ServerEndpoint
            )
            endpoint_class(reactor, host_and_port.port, interface=host_and_port.host).listen(protocol_factory)

    TwistedRuntimeServer.register = register  # type: ignore[method-assign]  # the patch


def _start_dynamodb_local_on_loopback() -> None:
    from localstack.services.dynamodb.packages import dynamodblocal_package
    from localstack.services.dynamodb.server import DynamodbServer

    def jar_path(self: Any) -> str:
        # Only used for `java ... -jar <jar_path> -port ...`: the launcher takes the same arguments.
        launcher = os.path.join(dynamodblocal_package.get_installed_dir() or "", LAUNCHER_JAR)
        if not os.path.exists(launcher):
            # Fail closed: DynamoDB Local's own main would listen on every interface.
            raise RuntimeError(
                f"{launcher} is missing (built by `make up`); refusing to start DynamoDB Local on every interface"
            )
        return launcher

    DynamodbServer.jar_path = property(jar_path)  # type: ignore[method-assign,assignment]  # the patch
