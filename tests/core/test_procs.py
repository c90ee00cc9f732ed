"""core/procs.py on its own: a child whose parent is already gone ends; a Popen child dies with a SIGKILLed parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

# The child runs this: a grandchild started with procs.preexec(), then it waits to be killed.
PARENT = """
import subprocess, sys, time
from core import procs
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], preexec_fn=procs.preexec())
print(g.pid, flush=True)
time.sleep(300)
"""


def test_a_child_whose_parent_is_already_gone_ends() -> None:
    code = ("import os, time; from core import procs; procs.die_with_parent(os.getppid() + 999999); "
            "time.sleep(30)")
    r = subprocess.run([sys.executable, "-c", code], timeout=20, check=False)
    assert r.returncode == -signal.SIGTERM


def test_a_popen_child_dies_with_its_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    grandchild = psutil.Process(int(parent.stdout.readline()))
    try:
        time.sleep(0.3)
        assert grandchild.is_running()
        parent.kill()
        parent.wait(10)
        _gone, left = psutil.wait_procs([grandchild], timeout=10)
        assert not left
    finally:
        if grandchild.is_running():
            grandchild.kill()
