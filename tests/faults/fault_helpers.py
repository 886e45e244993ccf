"""Helpers of the fault tests (a module of its own: ``conftest`` is not a unique name to
import from when several test directories have one)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros into ``directory/name`` until the disk is full; returns the file."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 1):  # big blocks, then what is left, byte by byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size) == size:
                    pass
        try:
            os.write(fd, b"\0")
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
        else:
            raise AssertionError(f"{directory} is not full after filling it")
    finally:
        os.close(fd)  # an open file would keep its space after the test unlinks it
    return path
