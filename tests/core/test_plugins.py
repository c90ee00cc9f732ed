"""Registration by presence: a module dropped into a folder is found, with no list to edit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.plugins import modules_in


def test_a_new_module_is_found_in_order_and_others_are_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "zeta.py").write_text("NAME = 'zeta'\nORDER = 1\n")
    (pkg / "alpha.py").write_text("NAME = 'alpha'\nORDER = 2\n")
    (pkg / "beta.py").write_text("NAME = 'beta'\nORDER = 2\n")
    (pkg / "helper.py").write_text("X = 1\n")  # no NAME: not a plug-in
    (pkg / "_private.py").write_text("NAME = 'hidden'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugpkg  # type: ignore[import-not-found]

    try:
        assert [m.NAME for m in modules_in(plugpkg, having="NAME")] == ["zeta", "alpha", "beta"]
    finally:
        for k in [k for k in sys.modules if k.startswith("plugpkg")]:
            del sys.modules[k]


def test_every_trigger_channel_and_page_module_is_registered() -> None:
    from alerts.channels.config import channel_kinds
    from alerts.rules import TRIGGERS
    from dashboard.pages import pages

    root = Path(__file__).resolve().parents[2]
    on_disk = {p.stem for p in (root / "alerts" / "triggers").glob("[!_]*.py")}
    assert {m.__name__.rsplit(".", 1)[1] for m in TRIGGERS.values()} == on_disk
    channels = {p.stem for p in (root / "alerts" / "channels").glob("[!_]*.py")} - {"base", "config"}
    assert {c.__module__.rsplit(".", 1)[1] for c in channel_kinds().values()} == channels
    assert [m.__name__.rsplit(".", 1)[1] for m in pages()][:2] == ["home", "wall"]
    assert {m.__name__.rsplit(".", 1)[1] for m in pages()} == {p.stem for p in (root / "dashboard" / "pages").glob(
        "[!_]*.py")}
