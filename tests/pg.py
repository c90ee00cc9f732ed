"""A throwaway PostgreSQL server for the tests (Debian's `postgresql` package), and a fresh database a test.

The server runs as a child process on a free loopback port with its data in a temporary directory,
unsynced (nothing in it outlives the session); as root it runs as the `postgres` user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from smartcommunity.services import free_port

PACKAGE = "postgresql"
ADMIN = "sc"  # the superuser initdb makes


class NoPostgres(RuntimeError):
    """PostgreSQL could not be installed or started here (the tests that need it skip)."""


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    where = bin_dir()
    if where is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", PACKAGE]
        if subprocess.run(cmd, env=env, check=False, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
            subprocess.run(cmd, env=env, check=False, capture_output=True)
        where = bin_dir()
    if where is None:
        raise NoPostgres(f"PostgreSQL is not installed (apt-get install {PACKAGE}) and could not be installed here")
    return where


@dataclass
class RunningPostgres:
    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    host: str = "127.0.0.1"  # where it listens (an address inside a network namespace, in the drills)

    def url(self, db: str = "postgres") -> str:
        if self.host != "127.0.0.1":  # from this host: by its socket in `root`, which any namespace reaches
            return f"postgresql://{ADMIN}@/{db}?host={self.root}&port={self.port}"
        return f"postgresql://{ADMIN}@127.0.0.1:{self.port}/{db}"

    def net_url(self, db: str = "postgres") -> str:
        """The URL other hosts use."""
        return f"postgresql://{ADMIN}@{self.host}:{self.port}/{db}"

    def fresh_database(self) -> tuple[str, str]:
        """(name, URL) of a new empty database."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY'.encode())
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def crash(self) -> None:
        """The server lost at once, as with its host: the postmaster and every backend (a backend outlives
        a killed postmaster for a moment and may still commit what never reaches a standby)."""
        os.killpg(self.proc.pid, signal.SIGKILL)  # started in a session of its own: the whole server
        self.proc.wait(10)

    def stop_sending(self) -> None:
        """The primary sends its standbys nothing more (its WAL senders stopped, SIGSTOP) and goes on
        committing: what it commits from here on is lost with it. (A standby stopped instead may still
        read, once woken, what the kernel had taken into its socket for it.)"""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            pids = [r[0] for r in db.execute("SELECT pid FROM pg_stat_replication").fetchall()]
        assert pids, "no standby is streaming from this server"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT to the postmaster itself (not to runuser in between): fast shutdown, clients cut off.
            try:
                pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Place:
    """Where a server runs: a network namespace (`ip netns`), its address there, the port, and the
    network its peers connect from (trusted, as the loopback is)."""

    netns: str
    host: str
    port: int
    peers: str  # CIDR

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


def start_postgres(replicable: bool = False, place: Place | None = None) -> RunningPostgres:
    bindir = ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="sc-pg-"))
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise NoPostgres("running as root and there is no `postgres` user to run PostgreSQL as") from None
        os.chown(root, pg.pw_uid, pg.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", ADMIN, "-A", "trust",
                           "-E", "UTF8", "--no-locale", "--no-sync"], capture_output=True, check=False, cwd=root)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"initdb failed: {init.stderr.decode(errors='replace')[-800:]}")
    if place is not None:
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {place.peers} trust\nhost replication all {place.peers} trust\n")
    return _launch(bindir, root, run_as, replicable, place)


def _launch(bindir: Path, root: Path, run_as: list[str], replicable: bool = False,
            place: Place | None = None) -> RunningPostgres:
    """Run the server on `root`/data (made by initdb or pg_basebackup) on a free port (or `place`'s, in its
    network namespace); wait until it answers."""
    data, log = root / "data", root / "postgres.log"
    port = place.port if place else free_port()
    host = place.host if place else "127.0.0.1"
    prefix = place.prefix() if place else []
    # Unsynced for speed; a server to be replicated keeps full page writes (a standby needs them).
    fast = ["-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", f"full_page_writes={'on' if replicable else 'off'}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*prefix, *run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
             "-c", f"listen_addresses={host}", *fast, "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)
    server = RunningPostgres(proc, root, port, host)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            server.stop()
            raise NoPostgres(f"postgres exited with code {proc.returncode}:\n{tail}")
        ready = subprocess.run([str(bindir / "pg_isready"), "-h", str(root) if place else host, "-p", str(port),
                                "-U", ADMIN],
                               capture_output=True, check=False)
        if ready.returncode == 0:
            return server
        time.sleep(0.1)
    server.stop()
    raise NoPostgres(f"postgres did not answer on {host}:{port} in 30s")


def start_standby(primary: RunningPostgres, place: Place | None = None) -> RunningPostgres:
    """A hot standby of `primary` by streaming replication (pg_basebackup -R), on its own port; promote it
    with `promote(standby)`. The primary must have been started with `replicable=True`."""
    bindir = ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="sc-pg-standby-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    prefix = place.prefix() if place else []  # copied over the network, as it then streams
    copy = subprocess.run([*prefix, *run_as, str(bindir / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port),
                           "-U", ADMIN, "-D", str(root / "data"), "-R", "-X", "stream", "--no-sync"],
                          capture_output=True, check=False, cwd=root)
    if copy.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"pg_basebackup failed: {copy.stderr.decode(errors='replace')[-800:]}")
    return _launch(bindir, root, run_as, replicable=True, place=place)


@contextlib.contextmanager
def replicated_pair() -> Iterator[tuple[RunningPostgres, RunningPostgres, str, str]]:
    """(primary, standby, database, a URL naming both for writes: libpq's target_session_attrs), the alert
    store migrated on the primary before the standby's copy; NoPostgres where PostgreSQL cannot run."""
    from alerts.store import open_store

    primary = start_postgres(replicable=True)
    standby = None
    try:
        name, url = primary.fresh_database()
        open_store(url).close()
        standby = start_standby(primary)
        yield primary, standby, name, (f"postgresql://{ADMIN}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/"
                                       f"{name}?target_session_attrs=read-write")
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()


def promote(standby: RunningPostgres) -> None:
    """Make the standby the primary (what an operator, or Patroni, does when the primary is lost)."""
    import psycopg

    with psycopg.connect(standby.url(), autocommit=True) as db:
        assert db.execute("SELECT pg_promote(true, 30)").fetchone()[0], "the standby was not promoted"
