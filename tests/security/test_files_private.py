"""Files with personal data or secrets are 0600 (issue 12: outbox.jsonl, alerts.sqlite and
deadletter.sqlite were 0644): whatever the system writes is private to its user, and what an older
version left readable is tightened when `up` starts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from core.secrets import private_open, tighten_tree, write_private

ROOT = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_tighten_tree_takes_group_and_other_access_off(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        (tmp_path / "alerts").mkdir()
        outbox = tmp_path / "alerts" / "outbox.jsonl"
        outbox.write_text('{"name": "王师傅", "phone": "13800000000"}\n')
        db = tmp_path / "alerts" / "alerts.sqlite"
        db.write_bytes(b"x")
        os.chmod(db, 0o664)
        link = tmp_path / "link"
        link.symlink_to("/etc/hostname")
    finally:
        os.umask(old)
    assert _mode(outbox) == 0o644
    assert tighten_tree(tmp_path) == 3  # the folder and the two files; the symlink is left alone
    assert _mode(outbox) == 0o600 and _mode(db) == 0o600 and _mode(tmp_path / "alerts") == 0o700
    assert _mode(Path("/etc/hostname")) & 0o004  # not followed through the link
    assert tighten_tree(tmp_path) == 0


def test_private_writers(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_private(tmp_path / "s" / "secret", "pw\n")
        with private_open(tmp_path / "o.jsonl") as fh:
            fh.write("x\n")
        (tmp_path / "wide").write_text("")
        os.chmod(tmp_path / "wide", 0o666)
        with private_open(tmp_path / "wide") as fh:
            fh.write("y\n")
    finally:
        os.umask(old)
    assert {_mode(tmp_path / n) for n in ("s/secret", "o.jsonl", "wide")} == {0o600}


def test_every_verb_writes_private_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env["SC_DATA_DIR"] = str(tmp_path / "var")
    r = subprocess.run([sys.executable, "-c", "import os; os.umask(0o022); from smartcommunity.cli import main; "
                        "main(['deadletter', 'list'])"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    made = [p for p in (tmp_path / "var").rglob("*")]
    assert made
    for p in made:
        assert _mode(p) & 0o077 == 0, (p, oct(_mode(p)))
