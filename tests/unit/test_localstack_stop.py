"""`LocalStackHost.stop` collects a LocalStack this process started: an exited child is a zombie
until its parent waits for it, and a zombie still counts as its process group being alive."""

from __future__ import annotations

import subprocess
import sys

import psutil


def test_stop_reaps_a_localstack_this_process_started(tmp_path):
    from valerix_localcloud.localstack_host import LocalStackHost

    host = LocalStackHost(tmp_path / "localstack", tmp_path / "python", tmp_path / "python", port=1)
    host.state_dir.mkdir(parents=True)
    # Stands in for LocalStack: its own process group (as `start` makes it), ends on SIGTERM.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    host.pid_file.write_text(str(child.pid))

    host.stop()

    assert not psutil.pid_exists(child.pid), psutil.Process(child.pid).status()  # no zombie left behind
    assert host.pid() is None and not host.pid_file.exists()
