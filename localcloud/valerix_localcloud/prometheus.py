"""A real Prometheus for the embedded local cloud: Debian's `prometheus`, started by `make up`,
scraping the metrics exporter with the project's own configuration and alert rules
(observability/prometheus), so the alerts can be watched firing; stopped by `make down`.

Loopback only, whatever VALERIX_LISTEN_ALL says (like Postgres): Prometheus' HTTP API answers
any query and its admin endpoints are one flag away, so it is for this machine. Its state
(rendered config, TSDB, log, PID) lives in .valerix/prometheus, owner-only (0700 folders, 0600
files: the process runs with umask 077), and the PID is recorded there so `make down`, `make
status` and the loopback test find it (valerix_localcloud.processes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from valerix_localcloud.listen import LOOPBACK, refuse_if_taken

REPO = Path(__file__).resolve().parents[2]
PORT_VAR = "VALERIX_PROMETHEUS_PORT"
DEFAULT_PORT = 9090


def port() -> int:
    return int(os.environ.get(PORT_VAR, str(DEFAULT_PORT)))


def binary() -> str | None:
    return shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


@dataclass
class LocalPrometheus:
    state: Path  # .valerix
    port: int
    exporter_target: str  # host:port of the exporter
    scrape_interval: str = "5s"  # the project's own (observability/prometheus/prometheus.yml)

    @property
    def folder(self) -> Path:
        return self.state / "prometheus"

    @property
    def pid_file(self) -> Path:
        return self.folder / "prometheus.pid"

    @property
    def config_file(self) -> Path:
        return self.folder / "prometheus.yml"

    @property
    def log_file(self) -> Path:
        return self.folder / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # ---- start ------------------------------------------------------------------------------
    def write_config(self) -> Path:
        import yaml

        # The exporter's config renderer: one source for the rules and the job (the exporter is
        # installed in the project venv, which runs this CLI; LocalStack's venv never imports it).
        from valerix_exporter import promconfig

        config = promconfig.render(
            [self.exporter_target], scrape_interval=self.scrape_interval, evaluation_interval=self.scrape_interval
        )
        self._private_dir(self.folder)
        text = yaml.safe_dump(config, sort_keys=False)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(self.config_file, 0o600)
        return self.config_file

    def start(self, timeout: float = 30.0) -> None:
        """(Re)start: a running one of this checkout is stopped first (the config may change)."""
        executable = binary()
        if executable is None:
            raise RuntimeError("the `prometheus` binary is missing (Debian package `prometheus`)")
        self.stop()
        refuse_if_taken(self.port, PORT_VAR)
        self.write_config()
        data = self.folder / "data"
        self._private_dir(data)
        cmd = [
            executable,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=2d",
            "--log.level=warn",
        ]
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            process = subprocess.Popen(
                cmd,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=0o077,
            )
        fd = os.open(self.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(str(process.pid))
        self._wait_ready(process, timeout)

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {process.returncode}; last lines of "
                    f"{self.log_file}:\n{_tail(self.log_file)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}/-/ready did not answer within {timeout:.0f}s")
            time.sleep(0.2)

    @staticmethod
    def _private_dir(path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)

    # ---- stop -------------------------------------------------------------------------------
    def process(self) -> psutil.Process | None:
        """The recorded process, if it is still ours: a PID reused by another program (after a
        crash or a reboot) is never taken for it, so `down` never signals a stranger."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            process = psutil.Process(pid)
            if str(self.config_file) in " ".join(process.cmdline()):
                return process
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
        return None

    def stop(self, timeout: float = 15.0) -> None:
        process = self.process()
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGTERM)  # its own session: nothing else in the group
                try:
                    process.wait(timeout)
                except psutil.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        self.pid_file.unlink(missing_ok=True)

    # ---- status -----------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        """(answers, detail) from its own API: ready, target health, rules and alerts firing."""
        import json

        process = self.process()
        if process is None:
            return False, "not running (`make up`)"
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=5) as response:
                groups = json.loads(response.read())["data"]["groups"]
            with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active", timeout=5) as response:
                targets = json.loads(response.read())["data"]["activeTargets"]
        except (OSError, ValueError, KeyError) as exc:
            return False, f"pid {process.pid} does not answer: {exc}"
        rules = [rule for group in groups for rule in group.get("rules", [])]
        firing = sorted(
            {rule["name"] for rule in rules if rule.get("type") == "alerting" and rule.get("state") == "firing"}
        )
        up = sum(1 for target in targets if target.get("health") == "up")
        detail = (
            f"pid {process.pid}, {len(rules)} rules, exporter target {up}/{len(targets)} up, "
            f"firing: {', '.join(firing) if firing else 'none'}"
        )
        return True, detail


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
