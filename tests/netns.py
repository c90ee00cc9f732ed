"""Hosts on this machine for the drills: Linux network namespaces joined by one bridge (a switch in a
namespace of its own), with addresses the test chooses in a block that is never routed off the machine
(nothing outside these namespaces knows of it). Processes run in a host by `ip netns exec`; a link is
cut with `ip link set … down` (this kernel has no netem). Everything is removed on exit, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

SUBNET = "10.213.{n}.0/24"  # a /24 of 10.213.0.0/16, one per run (pid): only inside these namespaces


class NoNetns(RuntimeError):
    """This machine refuses network namespaces (not root, or no `ip netns` in this container)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Hosts:
    """`with Hosts() as net: net.add("edge")` … each host one namespace with one link to the switch."""

    def __init__(self) -> None:
        self.tag = f"sc{os.getpid() % 100_000}"
        self.n = os.getpid() % 250 + 1
        self.cidr = SUBNET.format(n=self.n)
        self.switch = f"{self.tag}-sw"
        self.addr: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Hosts:
        if os.geteuid() != 0:
            raise NoNetns("the drill needs root for `ip netns` (network namespaces)")
        try:
            _ip("netns", "add", self.switch)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise NoNetns(f"this machine refuses `ip netns add`: {getattr(exc, 'stderr', '') or exc}") from None
        try:
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except subprocess.CalledProcessError as exc:
            self.__exit__(None, None, None)
            raise NoNetns(f"no bridge in a namespace here: {exc.stderr}") from None
        return self

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def add(self, host: str) -> str:
        """A new host on the switch; its address."""
        ns, i = self.ns(host), len(self.addr) + 10
        addr = f"10.213.{self.n}.{i}"
        near, far = f"{self.tag}{i}h", f"{self.tag}{i}s"  # ≤ 15 characters
        _ip("netns", "add", ns)
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", near, "netns", ns)
        _ip("link", "set", far, "netns", self.switch)
        _ip("-n", ns, "link", "set", near, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "set", far, "master", "br0")
        _ip("-n", self.switch, "link", "set", far, "up")
        self.addr[host] = addr
        return addr

    def link(self, host: str, up: bool) -> None:
        """The host's cable: plugged in or pulled out (its side of the switch stays as it is)."""
        _ip("-n", self.ns(host), "link", "set", "eth0", "up" if up else "down")

    def run(self, host: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """A process on the host, in a session of its own (so all it starts can be killed with it)."""
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None, cwd=cwd,
                                start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def pids(self, host: str) -> list[int]:
        got = _ip("netns", "pids", self.ns(host), check=False)
        return [int(p) for p in got.stdout.split()]

    def kill_host(self, host: str) -> int:
        """Every process of the host killed at once (SIGKILL), as when it loses power; how many."""
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pids(host) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in self.procs:
            if p.poll() is None and p.pid in pids:
                p.wait(5)
        return len(pids)

    def __exit__(self, *exc: object) -> None:
        for host in list(self.addr):
            self.kill_host(host)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        for host in self.addr:
            _ip("netns", "del", self.ns(host), check=False)
        _ip("netns", "del", self.switch, check=False)
