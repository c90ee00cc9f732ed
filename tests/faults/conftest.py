"""A small real file system to fill: a tmpfs mounted under /tmp (we run as root), unmounted by a
finalizer; `SmallDisk.fill()` takes every free byte, `free()` gives them back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.diskfull import is_disk_full


class SmallDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / ".filler"

    def fill(self) -> int:
        """Write until the disk says no; the bytes taken."""
        taken = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):
                piece = b"\0" * size
                while True:
                    try:
                        taken += os.write(fd, piece)
                    except OSError as exc:
                        assert is_disk_full(exc), exc
                        break
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[int], SmallDisk]]:
    """Mounts a tmpfs of the size asked (MiB) under /tmp; every mount is undone at the end."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    roots: list[Path] = []

    def mount(size_mb: int) -> SmallDisk:
        root = Path(tempfile.mkdtemp(prefix=f"sc-disk-{uuid.uuid4().hex[:6]}-", dir="/tmp"))
        roots.append(root)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(root)],
                       check=True)
        return SmallDisk(root)

    yield mount
    for root in roots:
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def small_disk(tmpfs: Callable[[int], SmallDisk]) -> SmallDisk:
    return tmpfs(24)
