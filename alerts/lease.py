"""Which process runs an alert partition when several hosts could (`SC_ALERTS_LEASE_S`): a lease in the
alert store, so that a standby engine takes over the communities of one that died.

Why a lease row with an expiry and not PostgreSQL's advisory locks: a session lock is released when
its connection drops, but a half-dead host whose connection lingers (a TCP keepalive away) would keep
it for minutes, and a lock says nothing to anyone reading the store; a row with an expiry on the
database's own clock hands over after a known time whatever the network does, shows who holds what
(`smartcommunity alerts leases`), works the same on SQLite (several processes on one host) and carries
an epoch that counts the hand-overs.

The holder renews every third of the lease. It stops itself — at once, without cleaning up, as a
`kill -9` would — when another holder has the lease, or when it could not renew for two thirds of
the lease (the store unreachable from here but maybe not from the standby): it is gone before the
lease runs out and anyone else may take it, so two engines never write for one partition. The one
exception is a full disk under the SQLite store: nobody else can take the lease while the file cannot
be written either, so the holder keeps warning (the held store keeps what it cannot write).

A standby polls every second; with a lease of `ttl` seconds a dead holder's partition is taken over
after at most `ttl` + 1 s, plus the engine's start. The broker keeps the partition's messages for its
persistent session meanwhile, and the new holder connects with that session's client id: what was
sent during the hand-over is judged, not lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from alerts.store import Store
from core.diskfull import is_disk_full

log = logging.getLogger("alerts.lease")

POLL_S = 1.0
LOST_EXIT = 75  # EX_TEMPFAIL: the supervisor starts it again, and it waits as a standby


def holder_id() -> str:
    """This process, as a lease shows it: host, pid and a random tag (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(self, store: Store, name: str, ttl_s: float, holder: str | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("a lease lasts more than 0 s")
        self.store = store
        self.name = name
        self.ttl_s = ttl_s
        self.holder = holder or holder_id()
        self.epoch: int | None = None
        self.on_lost = on_lost or _exit_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_take(self) -> bool:
        try:
            self.epoch = self.store.lease(self.name, self.holder, self.ttl_s)
        except Exception as exc:  # the store is down: a standby just tries again
            log.warning("lease %s: store not reachable (%s)", self.name, exc)
            return False
        return self.epoch is not None

    def wait(self) -> bool:
        """Block until this process holds the lease (True), or until `give_up` (False)."""
        said = False
        while not self._stop.is_set():
            if self.try_take():
                log.info("lease %s taken by %s (epoch %s)", self.name, self.holder, self.epoch)
                return True
            if not said:
                log.info("lease %s held elsewhere: waiting as a standby", self.name)
                said = True
            self._stop.wait(POLL_S)
        return False

    def keep(self) -> None:
        """Renew in the background until `release`; `on_lost` if it is lost (see the module's text)."""
        self._thread = threading.Thread(target=self._keep, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                epoch = self.store.lease(self.name, self.holder, self.ttl_s)
            except Exception as exc:
                if is_disk_full(exc):
                    renewed = time.monotonic()  # nobody can take a lease from a file nobody can write
                    continue
                if time.monotonic() - renewed < self.ttl_s * 2 / 3:
                    log.warning("lease %s: could not renew (%s); trying again", self.name, exc)
                    continue
                log.critical("lease %s: not renewed for %.1f s: stopping before it runs out", self.name,
                             time.monotonic() - renewed)
                self.on_lost()
                return
            if epoch != self.epoch:
                log.critical("lease %s: now held by another process (epoch %s, ours %s): stopping",
                             self.name, epoch, self.epoch)
                self.on_lost()
                return
            renewed = time.monotonic()

    def give_up(self) -> None:
        """Stop waiting or renewing (a stop signal)."""
        self._stop.set()

    def release(self) -> None:
        """Stop renewing and hand the lease over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.epoch is not None:
            try:
                self.store.release_lease(self.name, self.holder)
            except Exception as exc:
                log.warning("lease %s: not released (%s): it runs out in %.0f s", self.name, exc, self.ttl_s)

    def snapshot(self) -> dict[str, object]:
        return {"name": self.name, "holder": self.holder, "epoch": self.epoch, "ttl_s": self.ttl_s}


def _exit_now() -> None:
    logging.shutdown()
    os._exit(LOST_EXIT)
