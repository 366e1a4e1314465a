"""j1_min/files.py: an atomic write leaves the old file or the whole new one, with a plain write's
permissions."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from j1_min.files import atomic_write


def test_a_crash_during_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"good")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary file left behind


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write(tmp_path / "missing" / "x.pt", lambda p: None)


def test_an_atomic_write_has_the_permissions_a_plain_write_would_have(tmp_path):
    # a umask that neither 0o600 (mkstemp) nor 0o644 (the usual default) would satisfy
    old = os.umask(0o027)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        atomic_write(tmp_path / "atomic", lambda p: Path(p).write_bytes(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == (
        tmp_path / "plain").stat().st_mode & 0o777 == 0o640
