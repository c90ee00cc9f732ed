"""Every process ends with its parent (core/procs.py).

SIGTERM to a command that starts children stops them all (and `simulate` still prints its
summary); SIGKILL to the parent, which it cannot handle, still leaves no child behind
(PR_SET_PDEATHSIG). `up` is covered the same way in test_up.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core import heartbeat
from core.settings import Settings
from tests.conftest import Collector, wait_until


def launch(settings: Settings, tmp_path: Path, *verb: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")} | settings.env()
    with (tmp_path / "stderr.log").open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "smartcommunity", *verb], env=env,
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def descendants(proc: subprocess.Popen[bytes], at_least: int, timeout: float = 60) -> list[psutil.Process]:
    """The command's child processes, once there are `at_least` of them."""
    parent = psutil.Process(proc.pid)
    kids = wait_until(lambda: (k if len(k := parent.children(recursive=True)) >= at_least else None), timeout, 0.2)
    assert kids, f"{at_least} children expected, found {parent.children(recursive=True)}"
    return kids


@pytest.fixture
def reaper() -> Iterator[list[psutil.Process]]:
    """Processes a failed test must not leave behind."""
    procs: list[psutil.Process] = []
    yield procs
    for p in alive(procs):
        p.kill()


def test_sigterm_to_simulate_load_stops_its_publishers_and_prints_the_summary(
        settings: Settings, tmp_path: Path, reaper: list[psutil.Process]) -> None:
    telemetry = Collector(settings, "sc/+/+/+/telemetry")
    proc = launch(settings, tmp_path, "simulate", "--rate", "500", "--processes", "3", "--duration", "300")
    reaper.append(psutil.Process(proc.pid))
    kids = descendants(proc, 3)
    reaper.extend(kids)
    try:
        assert telemetry.wait_for(lambda m: len(m) > 200, 30), (tmp_path / "stderr.log").read_text()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        _gone, left = psutil.wait_procs(kids, timeout=10)
        assert not alive(left), left
        text = out.decode()
        assert "load: " in text and "processes in" in text and "(stopped early)" in text, text
        # and nothing publishes any more
        n = len(telemetry.messages)
        time.sleep(1.5)
        assert len(telemetry.messages) - n < 10
    finally:
        telemetry.close()


def test_sigterm_to_simulate_prints_the_summary(settings: Settings, tmp_path: Path,
                                                reaper: list[psutil.Process]) -> None:
    telemetry = Collector(settings, "sc/+/+/+/telemetry")
    proc = launch(settings, tmp_path, "simulate", "--speed", "60", "--duration", "86400")
    reaper.append(psutil.Process(proc.pid))
    try:
        assert telemetry.wait_for(lambda m: len(m) > 50, 60), (tmp_path / "stderr.log").read_text()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.decode().startswith("published "), out
    finally:
        telemetry.close()


def test_sigterm_to_ingest_workers_stops_every_worker(settings: Settings, tmp_path: Path,
                                                      reaper: list[psutil.Process]) -> None:
    proc = launch(settings, tmp_path, "ingest", "--workers", "2")
    reaper.append(psutil.Process(proc.pid))
    kids = descendants(proc, 2)
    reaper.extend(kids)
    names = lambda: {hb["name"] for hb in heartbeat.read_all(settings.data_path, "ingest") if hb["fresh"]}  # noqa: E731
    assert wait_until(lambda: {"ingest-0", "ingest-1"} <= names(), 60), (tmp_path / "stderr.log").read_text()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    _gone, left = psutil.wait_procs(kids, timeout=10)
    assert not alive(left), left
    assert all(hb.get("stopped") for hb in heartbeat.read_all(settings.data_path, "ingest"))  # they closed cleanly


@pytest.mark.parametrize("verb", [
    ("simulate", "--rate", "300", "--processes", "2", "--duration", "300"),
    ("ingest", "--workers", "2"),
], ids=["simulate-load", "ingest-workers"])
def test_sigkill_to_the_parent_leaves_no_child(settings: Settings, tmp_path: Path, reaper: list[psutil.Process],
                                               verb: tuple[str, ...]) -> None:
    proc = launch(settings, tmp_path, *verb)
    reaper.append(psutil.Process(proc.pid))
    reaper.extend(descendants(proc, 2))
    time.sleep(2)  # past start-up: the children are working
    # The children that are working now (a short-lived helper seen during start-up may be gone already).
    kids = alive(psutil.Process(proc.pid).children(recursive=True))
    reaper.extend(kids)
    assert len(kids) >= 2, kids
    proc.kill()
    proc.wait(10)
    _gone, left = psutil.wait_procs(kids, timeout=30)
    assert not alive(left), [(p.pid, p.cmdline()) for p in alive(left)]
