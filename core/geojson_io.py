"""Small GeoJSON writing helpers: deterministic, one feature per line, atomic replace."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson


def atomic_write_bytes(path: Path, chunks: Iterable[bytes]) -> None:
    """Write via a temp file in the same directory, fsync, then os.replace: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; keep the existing file's mode, else the usual 0644.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Persist the rename itself; not possible on every platform, hence best effort.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def feature_collection_chunks(
    features: Iterable[Mapping[str, Any]],
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterable[bytes]:
    """Serialise a FeatureCollection with one feature per line (small git diffs, easy to grep)."""
    head: dict[str, Any] = {"type": "FeatureCollection"}
    if name:
        head["name"] = name
    if metadata:
        head["metadata"] = dict(metadata)
    yield orjson.dumps(head)[:-1] + b',"features":['
    first = True
    for feat in features:
        yield (b"\n" if first else b",\n") + orjson.dumps(feat)
        first = False
    yield b"\n]}\n"


def write_feature_collection(
    path: Path,
    features: Iterable[Mapping[str, Any]],
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    atomic_write_bytes(path, feature_collection_chunks(features, name=name, metadata=metadata))
