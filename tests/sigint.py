"""Starting a command the way a background job of a script (or nohup) starts it: with SIGINT
ignored. An ignored signal stays ignored across exec, and Python then installs no ctrl-C handler
of its own -- a command that must stop on ctrl-C has to install it itself."""

from __future__ import annotations

import sys

_IGNORE_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
)


def with_sigint_ignored(command: list[str]) -> list[str]:
    """`command` (its first item an executable's path), started with SIGINT ignored."""
    return [sys.executable, "-c", _IGNORE_SIGINT_THEN_EXEC, *command]
