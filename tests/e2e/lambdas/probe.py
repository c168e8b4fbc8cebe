"""A tiny function the executor tests deploy: it sleeps, exits, fails or reports its version,
and tries what the executor's limits must stop (memory, escaping processes, other
environments' Runtime APIs)."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

VERSION = "v1"
MIB = 2**20
SLEEPER = "import time; time.sleep(600)"
# A daemon: fork, new session, fork again; the survivor's parent is gone.
DAEMON = "import os, time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\ntime.sleep(600)\n"
HOLDER = "import sys, time; data = b'x' * (int(sys.argv[1]) * 2**20); time.sleep(600)"


def handler(event, context):
    print(f"probe invoked: {json.dumps(event)}")
    result = {"pid": os.getpid(), "version": VERSION, "remainingMs": context.get_remaining_time_in_millis()}
    if event.get("spawnMarker"):
        spawn_escapees(event["spawnMarker"])
    if event.get("allocateMb"):
        held = b"x" * (event["allocateMb"] * MIB)  # bytes * n touches every page
        result["allocatedMb"] = len(held) // MIB
    if event.get("childrenAllocateMb"):
        result["childExitCodes"] = children_allocate(event["childrenAllocateMb"])
    if event.get("runtimeApi"):
        result["runtimeApi"] = os.environ["AWS_LAMBDA_RUNTIME_API"]
    if event.get("probeRuntimeApi"):
        result["statuses"] = probe_runtime_api(event["probeRuntimeApi"])
    if event.get("sleepSeconds"):
        time.sleep(event["sleepSeconds"])
    if event.get("exit"):
        os._exit(1)
    return result


def spawn_escapees(marker: str) -> None:
    """Processes that leave the runtime's process group and session; `marker` names them."""
    quiet: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.Popen([sys.executable, "-c", SLEEPER, marker], start_new_session=True, **quiet)
    subprocess.Popen(["setsid", sys.executable, "-c", SLEEPER, marker], **quiet)
    subprocess.run([sys.executable, "-c", DAEMON, marker], check=True, **quiet)


def children_allocate(sizes_mb: list[int]) -> list[int | None]:
    """Child processes that each hold `size` MiB at once; their exit codes after a moment."""
    children = [subprocess.Popen([sys.executable, "-c", HOLDER, str(size)]) for size in sizes_mb]
    time.sleep(1.5)
    codes = [child.poll() for child in children]
    for child in children:
        child.kill()
        child.wait()
    return codes


def probe_runtime_api(host_port: str) -> dict[str, int | str]:
    """What another Runtime API answers this environment: without a secret, and with ours."""
    own_secret = os.environ["AWS_LAMBDA_RUNTIME_API"].partition("/")[2]
    statuses = {}
    for name, path in (("noSecret", ""), ("ownSecret", f"/{own_secret}")):
        url = f"http://{host_port}{path}/2018-06-01/runtime/invocation/next"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                statuses[name] = response.status
        except urllib.error.HTTPError as exc:
            statuses[name] = exc.code
        except OSError as exc:
            statuses[name] = repr(exc)
    return statuses


def batch_handler(event, context):
    """SQS consumer: fails every record whose body is "poison", processes the rest."""
    failures = []
    for record in event["Records"]:
        print(f"record {record['body']} receive={record['attributes']['ApproximateReceiveCount']}")
        if record["body"] == "poison":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
