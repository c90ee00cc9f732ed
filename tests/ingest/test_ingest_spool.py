"""The disk spool on its own: order, restart, torn tails, the byte bound and a real ENOSPC."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ingest.spool import HEADER, Spool, SpoolFull, SpoolLocked


def drain(sp: Spool) -> list[bytes]:
    out = []
    while (rec := sp.peek()) is not None:
        out.append(rec.payload)
        sp.commit(rec)
    return out


def test_fifo_and_survives_restart(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10_000_000)
    for i in range(5):
        sp.append(b"line %d" % i)
    first = sp.peek()
    assert first is not None and first.payload == b"line 0"
    sp.commit(first)
    sp.close()
    sp = Spool(tmp_path, 10_000_000)  # a restarted ingestor continues where replay stopped
    sp.append(b"line 5")
    assert drain(sp) == [b"line %d" % i for i in range(1, 6)]
    assert sp.empty()
    sp.close()


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1_000_000)
    with pytest.raises(SpoolLocked):
        Spool(tmp_path, 1_000_000)
    sp.close()


def test_torn_tail_is_detected_and_skipped(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10_000_000)
    sp.append(b"a" * 100)
    sp.append(b"b" * 100)
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.spool"))[-1]
    # A crash mid-append: half a record at the end, and a flipped byte inside the second record.
    with seg.open("ab") as fh:
        fh.write(HEADER.pack(b"SCSP", 100, 0) + b"c" * 40)
    data = bytearray(seg.read_bytes())
    data[HEADER.size * 2 + 100 + 10] ^= 0xFF
    seg.write_bytes(bytes(data))
    sp = Spool(tmp_path, 10_000_000)
    sp.append(b"d" * 10)  # written after the restart, in a new segment
    assert drain(sp) == [b"a" * 100, b"d" * 10]
    assert sp.skipped_bytes > 100
    sp.close()


def test_byte_bound(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1000)
    sp.append(b"x" * 500)
    with pytest.raises(SpoolFull) as exc:
        sp.append(b"x" * 500)
    assert exc.value.reason == "spool_full"
    assert drain(sp) == [b"x" * 500]
    sp.close()


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_enospc_leaves_no_partial_record(tiny_fs: Path) -> None:
    sp = Spool(tiny_fs / "spool", 10_000_000)
    n = 0
    with pytest.raises(SpoolFull) as exc:
        while True:
            sp.append(os.urandom(3000))
            n += 1
    assert exc.value.reason == "disk_full"
    assert 5 <= n < 64
    assert len(drain(sp)) == n  # everything acknowledged as spooled is readable, nothing torn
    sp.append(b"room again")  # space freed by the drain is usable
    assert drain(sp) == [b"room again"]
    sp.close()
