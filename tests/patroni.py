"""PostgreSQL run by Patroni (Debian `patroni`) with etcd (Debian `etcd-server`) for the drills: each
center host runs a Patroni node; etcd, the one place both agree on who leads, runs on a third host (a
witness), so the loss of either center leaves a majority. Patroni bootstraps the primary, makes the other
node a streaming standby, and promotes it when the leader key runs out (`ttl`).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import wait_until
from tests.netns import Hosts
from tests.pg import ADMIN, NoPostgres, ensure_installed

SCOPE = "sc-store"
TTL_S = 10  # the leader key's life: the standby is promoted this long (and a loop) after the leader dies
LOOP_S = 1
RETRY_S = 3


def ensure_patroni() -> None:
    if shutil.which("patroni") and shutil.which("etcd"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "patroni", "etcd-server"],
                       env=env, check=False, capture_output=True)
    if not (shutil.which("patroni") and shutil.which("etcd")):
        raise NoPostgres("Patroni and etcd are not installed (apt-get install patroni etcd-server)")


@dataclass
class PatroniNode:
    name: str
    host: str
    addr: str
    root: Path

    def url(self, db: str = "postgres") -> str:
        """From this machine's root namespace: by the node's socket (any namespace reaches a file)."""
        return f"postgresql://{ADMIN}@/{db}?host={self.root}&port=5432"


def start_etcd(net: Hosts, host: str, root: Path) -> str:
    """etcd on `host`; its client URL."""
    ensure_patroni()
    addr = net.addr[host]
    data = root / "etcd"
    data.mkdir(parents=True)
    net.run(host, ["etcd", "--name", "witness", "--data-dir", str(data),
                   "--listen-client-urls", f"http://{addr}:2379", "--advertise-client-urls", f"http://{addr}:2379",
                   "--listen-peer-urls", f"http://{addr}:2380", "--initial-advertise-peer-urls", f"http://{addr}:2380",
                   "--initial-cluster", f"witness=http://{addr}:2380"], root / "etcd.log")
    return f"{addr}:2379"


def start_node(net: Hosts, host: str, etcd: str, root: Path) -> PatroniNode:
    """A Patroni node on `host` (as the `postgres` user: PostgreSQL refuses root)."""
    bindir = ensure_installed()
    addr = net.addr[host]
    node = PatroniNode(host, host, addr, root)
    root.mkdir(parents=True)
    pg = pwd.getpwnam("postgres")
    conf = {
        "scope": SCOPE, "name": host,
        "restapi": {"listen": f"{addr}:8008", "connect_address": f"{addr}:8008"},
        "etcd3": {"hosts": [etcd]},
        "bootstrap": {
            "dcs": {"ttl": TTL_S, "loop_wait": LOOP_S, "retry_timeout": RETRY_S,
                    "maximum_lag_on_failover": 1 << 20,
                    "postgresql": {"use_pg_rewind": False,
                                   "parameters": {"max_connections": 200, "wal_level": "replica",
                                                  "hot_standby": "on", "max_wal_senders": 10}}},
            "initdb": [{"encoding": "UTF8"}, "no-locale", {"auth": "trust"}],
        },
        "postgresql": {
            "listen": f"{addr}:5432", "connect_address": f"{addr}:5432",
            "data_dir": str(root / "data"), "bin_dir": str(bindir),
            "pgpass": str(root / "pgpass"),
            # The standby's copy starts at once, not after a spread checkpoint (minutes on an idle server).
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {"superuser": {"username": ADMIN, "password": "drill"},
                               "replication": {"username": "replicator", "password": "drill"}},
            "parameters": {"unix_socket_directories": str(root), "fsync": "off"},  # commits as in service
            "pg_hba": [f"host all all {net.cidr} trust", f"host replication all {net.cidr} trust",
                       "local all all trust", "host all all 127.0.0.1/32 trust"],
        },
    }
    path = root / "patroni.yml"
    path.write_text(json.dumps(conf))  # YAML is a superset of JSON
    for p in (root, path):
        os.chown(p, pg.pw_uid, pg.pw_gid)
    net.run(host, ["runuser", "-u", "postgres", "--", "patroni", str(path)], root.parent / f"patroni-{host}.log")
    return node


def role(net: Hosts, node: PatroniNode) -> str | None:
    """What the node's REST API says it is ('primary'/'master', 'replica'), asked from its own host."""
    code = ("import json, sys, urllib.request as u\n"
            "try:\n print(json.load(u.urlopen(sys.argv[1], timeout=2)).get('role', ''))\n"
            "except Exception as e:\n print(getattr(e, 'code', '') and json.load(e).get('role', ''))")
    got = subprocess.run(["ip", "netns", "exec", net.ns(node.host), "python3", "-c", code,
                          f"http://{node.addr}:8008/patroni"], capture_output=True, text=True, check=False)
    out = got.stdout.strip()
    return out or None


def wait_role(net: Hosts, node: PatroniNode, roles: set[str], timeout: float) -> float:
    """Seconds until the node is one of `roles`."""
    t0 = time.monotonic()
    ok = wait_until(lambda: role(net, node) in roles, timeout, every=0.2)
    assert ok, f"patroni node {node.name} not {roles} after {timeout:.0f} s (last: {role(net, node)})"
    return time.monotonic() - t0


LEADER = {"master", "primary"}
