"""Component-test fixtures for the order and inventory services.

Real Postgres (the session `postgres_servers` fixture: one server per service, like the two RDS
instances) + moto (`mock_aws`) for SQS, DynamoDB and Secrets Manager. Lambda handlers are called
directly with API Gateway REST v1 / SQS events. Order reaches inventory the way it does in
the cloud, through the Lambda Invoke API over real HTTP with boto3: `inventory_server` serves
that API (`POST /2015-03-31/functions/{name}/invocations`, the shared emulator in
localcloud/valerix_localcloud/invoke_emulator.py) with uvicorn in a thread and runs
`functions.inventory.handler.reserve_handler` for it (moto's Lambda cannot run handler code
without Docker); boto3 reaches it through AWS_ENDPOINT_URL_LAMBDA.

Database logins are the real ones (functions/common/roles.py): each service has a master,
owner, app and reader secret; the migrate handlers run as they do on deploy (master bootstraps
the roles, the owner migrates), then every handler of the test runs as its service's app role.
The `Valerix.order_db` / `inventory_db` connections the tests inspect data with are the
servers' superuser.

Nothing here is autouse: only tests that ask for `valerix` get the environment.
"""

from __future__ import annotations

import dataclasses
import json
import secrets as secrets_module
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import uvicorn
from moto import mock_aws

from valerix_localcloud import invoke_emulator

REGION = "us-east-1"
IDEMPOTENCY_TABLE = "valerix-test-idempotency"
CIRCUIT_TABLE = "valerix-test-circuit"
ADMIN_KEY = "component-admin-key-0123456789abcdef"
ADMIN = {"x-api-key": ADMIN_KEY}

# Role logins of the test servers: label -> role name suffix (as infra/constructs/databases.py)
ROLE_SUFFIXES = {"owner": "owner", "app": "app", "reader": "backup"}


def role_secrets(server: Any, service: str) -> dict[str, dict]:
    """The four RDS-shaped secrets of a service database: master (the server's superuser),
    owner, app and reader (the roles the migrate function creates). Passwords are random, kept
    on the server object: roles live as long as the session's servers."""
    passwords = server.__dict__.setdefault(
        "role_passwords", {label: secrets_module.token_urlsafe(24) for label in ROLE_SUFFIXES}
    )
    master = server.secret()
    result = {"master": master}
    for label, suffix in ROLE_SUFFIXES.items():
        result[label] = {**master, "username": f"{service}_{suffix}", "password": passwords[label]}
    return result


def create_role_secrets(server: Any, service: str) -> dict[str, str]:
    """Store the four secrets in (mocked) Secrets Manager: label -> ARN."""
    client = aws_client("secretsmanager")
    return {
        label: client.create_secret(Name=f"valerix-test/{service}-db-{label}", SecretString=json.dumps(value))["ARN"]
        for label, value in role_secrets(server, service).items()
    }


def migrate_env(arns: dict[str, str]) -> dict[str, str]:
    """The environment CDK gives a migrate function (infra/stack.py: login="owner")."""
    return {
        "DB_SECRET_ARN": arns["owner"],
        "DB_MASTER_SECRET_ARN": arns["master"],
        "DB_APP_SECRET_ARN": arns["app"],
        "DB_READER_SECRET_ARN": arns["reader"],
        "DB_TLS": "disable",
    }


_SESSION: boto3.session.Session | None = None
_CLIENTS: dict[str, Any] = {}


def aws_client(service: str) -> Any:
    """Test-side boto3 clients from one long-lived session (moto intercepts them all)."""
    global _SESSION  # noqa: PLW0603 -- one session for the whole test run, made on first use
    if service not in _CLIENTS:
        if _SESSION is None:
            _SESSION = boto3.session.Session(region_name=REGION)
        _CLIENTS[service] = _SESSION.client(service)
    return _CLIENTS[service]


def lambda_context(name: str = "valerix-test") -> SimpleNamespace:
    return invoke_emulator.lambda_context(name, REGION)


def rest_event(
    method: str,
    path: str,
    body: Any = None,
    headers: dict | None = None,
    query: dict | None = None,
    raw_body: str | None = None,
    received_seconds_ago: float = 0.0,
) -> dict:
    """An API Gateway REST v1 proxy event, as API Gateway sends it to the function."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    if text is not None:
        headers.setdefault("Content-Type", "application/json")
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "abc123",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "requestTimeEpoch": int((time.time() - received_seconds_ago) * 1000),
        },
        "body": text,
        "isBase64Encoded": False,
    }


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: dict


def call_api(handler: Callable, method: str, path: str, body: Any = None, **kwargs: Any) -> Reply:
    result = handler(rest_event(method, path, body, **kwargs), lambda_context())
    text = result.get("body") or ""
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return Reply(result["statusCode"], parsed, headers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """uvicorn serving an ASGI app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.active = 0
        self._active_lock = threading.Lock()
        inner = app

        async def counting_app(scope: dict, receive: Any, send: Any) -> None:
            with self._active_lock:
                self.active += 1
            try:
                await inner(scope, receive, send)
            finally:
                with self._active_lock:
                    self.active -= 1

        config = uvicorn.Config(
            counting_app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait for in-flight requests (e.g. a slow reservation the caller gave up on)."""
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


RESERVE_FUNCTION = "valerix-test-inventory-reserve"


@pytest.fixture(scope="session")
def inventory_server() -> Iterator[ThreadedServer]:
    # The reserve handler is imported at the first invocation, under the test's environment.
    server = ThreadedServer(
        invoke_emulator.invoke_app(
            {RESERVE_FUNCTION: "functions.inventory.handler:reserve_handler"}, context_factory=lambda_context
        )
    ).start()
    yield server
    server.stop()


def reset_all_caches() -> None:
    """Forget everything a warm execution environment keeps (each test is a fresh environment):
    the factories' caches (`functools.cache`), the inventory client's worker threads closed."""
    from functions.common import aws, db, health, settings
    from functions.gremlin import injector
    from functions.inventory import service as inventory_service
    from functions.order import inventory_client

    if inventory_client.get_client.cache_info().currsize:
        inventory_client.get_client().close()
    for factory in (
        settings.get_settings,
        settings.runtime,
        health.health_cache,
        inventory_client.get_client,
        inventory_service._idempotency,
        db.get_database,
        aws.secrets_provider,
        aws.client,
        injector.injector,
    ):
        if hasattr(factory, "cache_clear"):  # not while a test's stand-in (use_injector) replaces it
            factory.cache_clear()


_CIRCUITS = iter(range(1_000_000))


def fresh_circuit(monkeypatch: Any) -> None:
    """A circuit of its own for the test: Powertools keeps each circuit's failure streak in its
    environment (per circuit name), as a warm Lambda environment would across invocations."""
    from functions.order import inventory_client

    monkeypatch.setattr(inventory_client, "CIRCUIT_NAME", f"inventory-reservations-test-{next(_CIRCUITS)}")


def warm_up() -> None:
    """Create the order function's handler and clients like a warm Lambda environment has them
    (the runtime looks the handler up at INIT, before the first request)."""
    from functions.common import aws
    from functions.order import handler as order_handler
    from functions.order import inventory_client

    assert callable(order_handler.api_handler)

    inventory_client.get_client()
    aws.client("sqs")
    aws.client("dynamodb")


def reset_schema(server: Any) -> None:
    conn = server.connect()
    try:
        conn.execute_simple("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        conn.close()


class Chaos:
    """A stand-in gremlin injector the tests program: hooks run in the inventory request thread."""

    def __init__(self) -> None:
        self.before: Callable[[], None] | None = None
        self.after: Callable[[], None] | None = None
        self.calls = 0

    def before_reservation(self) -> None:
        self.calls += 1
        if self.before:
            self.before()

    def after_commit(self) -> None:
        if self.after:
            self.after()

    def database_fault(self) -> None:  # functions/common/db.py asks; tests/component/test_db_gremlin.py programs it
        return None


def use_injector(monkeypatch: Any, stand_in: Any) -> None:
    """Every caller of `functions.gremlin.injector.injector()` gets `stand_in` for this test."""
    from functions.gremlin import injector

    monkeypatch.setattr(injector, "injector", lambda: stand_in)


def _queue_with_dlq(sqs: Any, name: str) -> str:
    """A queue that redrives to `<name>-dlq`, as the stack's QueuePair (infra/constructs/queue_pair.py)."""
    from infra.constructs.service_functions import MAX_RECEIVE_COUNT

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
    return str(sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})["QueueUrl"])


@dataclasses.dataclass
class Valerix:
    """Handles on the whole component environment of one test."""

    order_db: Any
    inventory_db: Any
    inventory_queue_url: str
    completion_queue_url: str
    chaos: Chaos
    monkeypatch: Any
    secret_arns: dict = dataclasses.field(default_factory=dict)  # service -> label -> ARN

    def migrate(self, service: str) -> dict:
        """Run a migrate handler with a migrate function's environment, then restore the app's."""
        return run_migrate(service, self.secret_arns, self.monkeypatch)

    # -- handlers ---------------------------------------------------------------------
    @property
    def order_api(self) -> Callable:
        from functions.order.handler import api_handler

        return api_handler

    @property
    def inventory_api(self) -> Callable:
        from functions.inventory.handler import api_handler

        return api_handler

    def order(
        self, product_id: str = "widget", quantity: int = 1, key: str | None = None, received_seconds_ago: float = 0.0
    ) -> Reply:
        headers = {"Idempotency-Key": key} if key else None
        return call_api(
            self.order_api,
            "POST",
            "/orders",
            {"productId": product_id, "quantity": quantity},
            headers=headers,
            received_seconds_ago=received_seconds_ago,
        )

    def set_env(self, **values: str) -> None:
        from functions.common import settings
        from functions.order import inventory_client

        for key, value in values.items():
            self.monkeypatch.setenv(key, value)
        settings.get_settings.cache_clear()
        inventory_client.get_client().close()
        inventory_client.get_client.cache_clear()
        warm_up()

    # -- database views ---------------------------------------------------------------
    def stock(self, product_id: str) -> int | None:
        rows = self.inventory_db.run("SELECT stock FROM products WHERE product_id = :p", p=product_id)
        return rows[0][0] if rows else None

    def set_stock(self, product_id: str, stock: int, name: str | None = None) -> None:
        self.inventory_db.run(
            "INSERT INTO products (product_id, name, stock) VALUES (:p, :n, :s) "
            "ON CONFLICT (product_id) DO UPDATE SET stock = :s",
            p=product_id,
            n=name or product_id.title(),
            s=stock,
        )

    def order_row(self, order_id: str) -> dict | None:
        rows = self.order_db.run(
            "SELECT order_id, status, reason, product_id, quantity FROM orders WHERE order_id = :o", o=order_id
        )
        if not rows:
            return None
        r = rows[0]
        return {"orderId": r[0], "status": r[1], "reason": r[2], "productId": r[3], "quantity": r[4]}

    def count(self, db: str, table: str) -> int:
        conn = self.order_db if db == "order" else self.inventory_db
        return conn.run(f"SELECT count(*) FROM {table}")[0][0]

    def snapshot(self) -> dict:
        """Everything both databases hold, for "nothing changed" assertions."""
        return {
            "orders": self.order_db.run("SELECT * FROM orders ORDER BY order_id"),
            "products": self.inventory_db.run("SELECT product_id, name, stock FROM products ORDER BY product_id"),
            "reservations": self.inventory_db.run("SELECT * FROM reservations ORDER BY order_id"),
        }

    # -- queues -------------------------------------------------------------------------
    @staticmethod
    def dlq_of(url: str) -> str:
        return url + "-dlq"

    def queue_depth(self, url: str) -> int:
        attrs = aws_client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def receive(self, url: str, max_messages: int = 10) -> list[dict]:
        """One receive (like one Lambda batch); the messages stay invisible for 60 s."""
        return (
            aws_client("sqs")
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        )

    def sqs_event(self, messages: list[dict], queue_url: str) -> dict:
        queue_name = queue_url.rsplit("/", 1)[-1]
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": str(int(time.time() * 1000)),
                        "SenderId": "test",
                        "ApproximateFirstReceiveTimestamp": "0",
                    },
                    # as the event source mapping passes them (the correlation id travels here)
                    "messageAttributes": {
                        name: {
                            "stringValue": value.get("StringValue"),
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": value["DataType"],
                        }
                        for name, value in m.get("MessageAttributes", {}).items()
                    },
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{queue_name}",
                    "awsRegion": REGION,
                }
                for m in messages
            ]
        }

    def deliver(self, url: str, handler: Callable, messages: list[dict], redeliver_failed: bool = False) -> dict:
        """What the SQS event source mapping does: invoke, then delete the records that succeeded.

        Failed records stay in the queue (invisible until their visibility timeout, or visible
        again at once with `redeliver_failed`)."""
        response = handler(self.sqs_event(messages, url), lambda_context())
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        sqs = aws_client("sqs")
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            elif redeliver_failed:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return response

    def drain_inventory_queue(self) -> int:
        from functions.inventory.handler import queue_handler

        total = 0
        while messages := self.receive(self.inventory_queue_url):
            self.deliver(self.inventory_queue_url, queue_handler, messages)
            total += len(messages)
        return total

    def drain_completion_queue(self) -> int:
        from functions.order.handler import completion_handler

        total = 0
        while messages := self.receive(self.completion_queue_url):
            self.deliver(self.completion_queue_url, completion_handler, messages)
            total += len(messages)
        return total

    def drain(self) -> None:
        self.drain_inventory_queue()
        self.drain_completion_queue()


def use_app_logins(arns: dict[str, dict[str, str]], monkeypatch: Any) -> None:
    """Run-time environment: both services connect as their app role. One process hosts both
    services here; on AWS each function has its own DB_SECRET_ARN."""
    from functions.common import db, settings
    from functions.inventory import repository as inventory_repository

    monkeypatch.setenv("DB_SECRET_ARN", arns["order"]["app"])
    monkeypatch.setenv("DB_TLS", "disable")
    for key in ("DB_MASTER_SECRET_ARN", "DB_APP_SECRET_ARN", "DB_READER_SECRET_ARN"):
        monkeypatch.delenv(key, raising=False)
    settings.get_settings.cache_clear()
    inventory_arn = arns["inventory"]["app"]
    monkeypatch.setattr(
        inventory_repository,
        "database",
        lambda: db.get_database(
            inventory_arn, tls=settings.get_settings().db_tls, application_name="valerix-inventory"
        ),
    )


def run_migrate(service: str, all_arns: dict[str, dict[str, str]], monkeypatch: Any) -> dict:
    """A migrate handler with the environment the deploy gives it, then back to the app logins."""
    from functions.common import settings
    from functions.inventory.handler import migrate_handler as migrate_inventory
    from functions.order.handler import migrate_handler as migrate_order

    for key, value in migrate_env(all_arns[service]).items():
        monkeypatch.setenv(key, value)
    settings.get_settings.cache_clear()
    try:
        return (migrate_order if service == "order" else migrate_inventory)({}, lambda_context())
    finally:
        use_app_logins(all_arns, monkeypatch)


@pytest.fixture
def valerix(postgres_servers, inventory_server, monkeypatch) -> Iterator[Valerix]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "order",
        "POWERTOOLS_METRICS_NAMESPACE": "Valerix",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "INVENTORY_RESERVE_FUNCTION": RESERVE_FUNCTION,
        "AWS_ENDPOINT_URL_LAMBDA": inventory_server.url,
        "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
        "CIRCUIT_BREAKER_TABLE": CIRCUIT_TABLE,
        "CIRCUIT_FAILURE_THRESHOLD": "5",
        "CIRCUIT_RECOVERY_TIMEOUT_SECONDS": "10",
        # tests change the environment between health calls; the cache has its own tests
        "HEALTH_CACHE_SECONDS": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "GREMLIN_PARAMETER_NAME",
        "GREMLIN_STATE_TABLE",
        "INVENTORY_CALL_BUDGET_MS",
        "POWERTOOLS_CIRCUIT_BREAKER_DISABLED",
    ):
        monkeypatch.delenv(key, raising=False)
    reset_all_caches()
    fresh_circuit(monkeypatch)
    for server in postgres_servers.values():
        reset_schema(server)

    with mock_aws():
        sqs = aws_client("sqs")
        inventory_queue = _queue_with_dlq(sqs, "valerix-test-inventory")
        completion_queue = _queue_with_dlq(sqs, "valerix-test-completion")
        ddb = aws_client("dynamodb")
        for table in (IDEMPOTENCY_TABLE, CIRCUIT_TABLE):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        arns = {service: create_role_secrets(server, service) for service, server in postgres_servers.items()}
        monkeypatch.setenv("INVENTORY_QUEUE_URL", inventory_queue)
        monkeypatch.setenv("COMPLETION_QUEUE_URL", completion_queue)
        admin_arn = aws_client("secretsmanager").create_secret(
            Name="valerix-test/admin-api-key", SecretString=ADMIN_KEY
        )["ARN"]
        monkeypatch.setenv("ADMIN_KEY_SECRET_ARN", admin_arn)

        fake_chaos = Chaos()
        use_injector(monkeypatch, fake_chaos)

        assert run_migrate("order", arns, monkeypatch)["applied"]
        assert run_migrate("inventory", arns, monkeypatch)["seeded"] is True

        warm_up()
        order_conn = postgres_servers["order"].connect()
        inventory_conn = postgres_servers["inventory"].connect()
        try:
            yield Valerix(order_conn, inventory_conn, inventory_queue, completion_queue, fake_chaos, monkeypatch, arns)
        finally:
            inventory_server.wait_idle()
            order_conn.close()
            inventory_conn.close()
            reset_all_caches()
