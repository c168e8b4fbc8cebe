"""Files only their owner may read: the local cloud's state holds the admin key and the
database passwords (`.valerix/`, the CDK assembly, deploy logs and outputs).

`make up` also sets a umask of 077, so whatever its children write (cdk, LocalStack) is
private from the start; these helpers cover files that existed before (older checkouts
wrote them world-readable) and writes that must never be readable, not even for an instant.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file that is 0600 from the moment it exists."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def make_tree_private(root: Path, skip: tuple[str, ...] = ()) -> None:
    """Drop every group/other permission bit below `root` (not following symlinks).

    `skip` names direct children of `root` left as they are (virtualenvs: no secrets in
    them, tens of thousands of files, and already unreachable inside a 0700 `root`).
    """
    root = Path(root)
    if not root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [name for name in dirnames if name not in skip]
        for path in [dirpath, *(os.path.join(dirpath, name) for name in filenames)]:
            _drop_group_other(path)


def _drop_group_other(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(mode) and mode & 0o077:
        os.chmod(path, stat.S_IMODE(mode) & ~0o077)
