"""Atomic file writes: a file is either the old one or the whole new one, never half of one (a
crash, a kill or a full disk in the middle leaves the old file as it was)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path, write_fn) -> None:
    """Call write_fn(tmp_path) on a temporary file in path's folder, fsync it, then rename it onto
    path. The file gets the permissions a plain open() would give it (0o666 less the umask), not
    mkstemp's 0o600. A missing folder is a ValueError naming it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
