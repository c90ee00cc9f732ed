"""Fixtures for the geodata tests: a private SC_DATA_DIR and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import smartcommunity.cli as sc_cli
from core.settings import Settings, load_settings

CliResult = tuple[int, str, str]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SC_DATA_DIR -> tmp_path/var, with no config file or registry override leaking in."""
    for key in ("SC_REGISTRY_FILE", "SC_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./smartcommunity.toml from the developer's checkout
    d = tmp_path / "var"
    monkeypatch.setenv("SC_DATA_DIR", str(d))
    return d


@pytest.fixture
def geo_settings(data_dir: Path) -> Settings:
    return load_settings()


@pytest.fixture
def cli(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run `smartcommunity ARGS` in-process through smartcommunity.cli.main; returns (rc, out, err)."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        rc = sc_cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
