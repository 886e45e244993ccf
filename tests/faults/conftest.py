"""Fixtures of the fault tests: tiny tmpfs mounts (a full disk on demand), always unmounted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _umount(path: Path) -> None:
    for _ in range(20):  # a process that still has a file open there keeps it busy a while
        done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        print(f"umount {path}: {done.stderr.strip()}", file=sys.stderr)
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, int], Path]]:
    """``tmpfs(directory, size_kib)`` mounts a tmpfs of that size on ``directory`` (created);
    every mount is undone at the end of the test, failed or not. Skips (with the reason)
    where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(directory: Path, size_kib: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full disk needs a tmpfs mount, which needs root")
        directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                               str(directory)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(directory)
        return directory

    try:
        yield mount
    finally:
        for directory in reversed(mounted):
            _umount(directory)
