"""The two-center drill, run for real on hosts that are Linux network namespaces (tests/netns.py):

- an edge host: 艳湖's edge broker (`smartcommunity edge run yanhu --center A --copy B`: one bridge
  to each center, each with its own persistent queue) and the simulated devices of 艳湖;
- center A and center B: each its own Mosquitto, InfluxDB and ingest (each center keeps a full copy
  of the time series), an alerts engine (`alerts --standby`: A holds the lease, B waits), a dashboard
  and PostgreSQL (A the primary, B a streaming-replication standby);
- the staff's host: what is published on `sc/alerts` at each center, and the SMS/voice gateway the
  engines notify (an HTTP receiver).

During a live gas leak it kills every process of center A, promotes B's database (as an operator or
Patroni would, a few seconds later), lets a second leak go red while nobody runs the engine, then
pulls the edge's cable out for a while. It counts telemetry points, alerts and notifications and
times the takeover. The short version runs in `make test`; the long one (a 60 s cut) is `slow`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.registry import system_registry
from security.broker import EDGE_STATE_ROOT
from smartcommunity.services import mosquitto_conf
from tests.conftest import make_settings, wait_until
from tests.netns import Hosts, NoNetns
from tests.patroni import LEADER, start_etcd, start_node, wait_role
from tests.pg import NoPostgres, Place, RunningPostgres, promote, start_postgres, start_standby

ROOT = Path(__file__).resolve().parents[2]
PY = [sys.executable, "-m"]
COMMUNITY = "yanhu"
GATEWAY_PORT = 8099
DASH_PORT = 8050
TOKEN = "drill-service-token"  # the dashboards' /api from another host needs one (SC_API_TOKEN)
RED_LEL = 25.0  # gas_lel_high's threshold (alerts/rules.yaml): the reading that makes the alert


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(raw))
    return out


def wait(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """`wait_until`, failing with what was waited for."""
    got = wait_until(pred, timeout, every)
    assert got, f"timed out after {timeout:.0f} s waiting for {what}"
    return got


@dataclass
class Center:
    name: str
    addr: str
    data: Path
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)


@dataclass
class Drill:
    net: Hosts
    tmp: Path
    store_url: str
    db: str
    primary: Any  # RunningPostgres, or a PatroniNode
    standby: Any
    by_patroni: bool = False
    centers: dict[str, Center] = field(default_factory=dict)

    def port_open(self, host: str, port: int) -> bool:
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
        return subprocess.run(["ip", "netns", "exec", self.net.ns(host), "bash", "-c", probe],
                              capture_output=True, check=False).returncode == 0

    def start_center(self, name: str) -> Center:
        addr, data = self.net.addr[name], self.tmp / name
        data.mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT), SC_DATA_DIR=str(data), SC_MQTT_URL="mqtt://127.0.0.1:1883",
                   SC_INFLUX_URL="http://127.0.0.1:8086", SC_STORE_URL=self.store_url, SC_AUTO_INSTALL="0",
                   SC_ALERTS_WEBHOOK_URL=f"http://{self.net.addr['staff']}:{GATEWAY_PORT}/gateway",
                   SC_API_TOKEN=TOKEN)
        env.pop("SC_MQTT_STANDBY_URLS", None)
        c = Center(name, addr, data, env)
        # The center's broker listens on its own address (inside this namespace only), anonymous as on loopback.
        conf = data / "mosquitto.conf"
        (data / "mqtt").mkdir()
        conf.write_text(mosquitto_conf(1883, data / "mqtt", 1_000_000, "listener 1883 0.0.0.0\nallow_anonymous true\n"))
        c.pids["mosquitto"] = self.net.run(name, ["mosquitto", "-c", str(conf)], data / "mosquitto.log").pid
        c.pids["influxdb"] = self.net.run(name, [*PY, "smartcommunity", "services", "run", "influxdb"],
                                          data / "influxdb.log", env, ROOT).pid
        wait(lambda: self.port_open(name, 1883) and self.port_open(name, 8086), 60, f"{name}'s broker and InfluxDB")
        c.pids["ingest"] = self.net.run(name, [*PY, "smartcommunity", "ingest"], data / "ingest.log", env, ROOT).pid
        c.pids["alerts"] = self.net.run(name, [*PY, "smartcommunity", "alerts", "--standby"], data / "alerts.log",
                                        env, ROOT).pid
        c.pids["dashboard"] = self.net.run(name, [*PY, "smartcommunity", "dashboard", "--host", addr, "--port",
                                                  str(DASH_PORT)], data / "dashboard.log", env, ROOT).pid
        self.centers[name] = c
        return c

    def lease(self, pg: Any) -> tuple[int, int] | None:
        """(holder's pid, epoch) of the street's engine lease, as `pg` has it (a standby reads too)."""
        try:
            with psycopg.connect(pg.url(self.db), autocommit=True, connect_timeout=2) as db:
                row = db.execute("SELECT holder, epoch FROM leases WHERE name = 'alerts'").fetchone()
        except psycopg.Error:
            return None
        return (int(row[0].split(":")[1]), int(row[1])) if row else None

    def api(self, center: str, path: str) -> Any:
        """GET a center's dashboard /api from the staff's host (None if it does not answer 200)."""
        code = ("import json, sys, urllib.request as u; r = u.urlopen(u.Request(sys.argv[1], headers="
                "{'Authorization': 'Bearer ' + sys.argv[2]}), timeout=5); print(r.read().decode())")
        url = f"http://{self.net.addr[center]}:{DASH_PORT}{path}"
        got = subprocess.run(["ip", "netns", "exec", self.net.ns("staff"), sys.executable, "-c", code, url, TOKEN],
                             capture_output=True, text=True, check=False)
        return json.loads(got.stdout) if got.returncode == 0 else None

    def points(self, center: str) -> set[tuple[str, int]]:
        got = subprocess.run(["ip", "netns", "exec", self.net.ns(center), *PY, "tests.drill_watch", "points", "0"],
                             capture_output=True, text=True, env=self.centers[center].env, cwd=ROOT, check=False)
        if got.returncode != 0:
            return set()
        return {(d, ts) for d, ts in json.loads(got.stdout)}


@pytest.fixture
def drill(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Drill]:
    """The hosts and the alert store's database: by hand (`promote` does what an operator would), or run by
    Patroni with etcd on the staff's host as the witness (request.param "patroni": it promotes by itself)."""
    try:
        net = Hosts().__enter__()
    except NoNetns as exc:
        pytest.skip(f"the two-center drill needs network namespaces: {exc}")
    by_patroni = getattr(request, "param", "manual") == "patroni"
    servers: list[RunningPostgres] = []
    # Patroni runs PostgreSQL as `postgres`, which cannot enter pytest's private temporary folders.
    pat = Path(tempfile.mkdtemp(prefix="sc-patroni-"))
    pat.chmod(0o755)
    try:
        for host in ("a", "b", "edge", "staff"):
            net.add(host)
        from alerts.store import open_store

        try:
            if by_patroni:
                etcd = start_etcd(net, "staff", pat)
                primary: Any = start_node(net, "a", etcd, pat / "a")
                wait_role(net, primary, LEADER, 90)
                db = "smartcommunity"
                with psycopg.connect(primary.url(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {db}".encode())
                open_store(primary.url(db)).close()  # migrated on the leader
                standby: Any = start_node(net, "b", etcd, pat / "b")
                wait_role(net, standby, {"replica"}, 90)
            else:
                primary = start_postgres(replicable=True, place=Place(net.ns("a"), net.addr["a"], 5432, net.cidr))
                servers.append(primary)
                db, url = primary.fresh_database()
                open_store(url).close()  # migrated on the primary, before the standby's copy
                standby = start_standby(primary, Place(net.ns("b"), net.addr["b"], 5432, net.cidr))
                servers.append(standby)
        except NoPostgres as exc:
            pytest.skip(str(exc))
        store_url = (f"postgresql://sc@{net.addr['a']}:5432,{net.addr['b']}:5432/{db}"
                     "?target_session_attrs=read-write&connect_timeout=2")
        yield Drill(net, tmp_path, store_url, db, primary, standby, by_patroni)
    finally:
        net.__exit__(None, None, None)
        for pg in reversed(servers):
            pg.stop()
        shutil.rmtree(pat, ignore_errors=True)


def run_drill(d: Drill, cut_s: float) -> dict[str, Any]:
    net, tmp = d.net, d.tmp
    staff_log, edge_log = tmp / "staff.jsonl", tmp / "edge.jsonl"
    staff_env = dict(os.environ, PYTHONPATH=str(ROOT))
    net.run("staff", [*PY, "tests.drill_watch", "staff", str(staff_log), str(GATEWAY_PORT),
                      f"{net.addr['a']}:1883", f"{net.addr['b']}:1883"], tmp / "staff.log", staff_env, ROOT)
    a = d.start_center("a")
    wait(lambda: (d.lease(d.primary) or (0,))[0] == a.pids["alerts"], 90, "center A's engine to hold the lease")
    b = d.start_center("b")
    wait(lambda: all(any((c.data / "run").glob("ingest*.json")) for c in (a, b)), 60, "both ingests")

    edge_dir = tmp / "edge"
    edge_dir.mkdir()
    edge_env = dict(os.environ, PYTHONPATH=str(ROOT), SC_DATA_DIR=str(edge_dir), SC_MQTT_URL="mqtt://127.0.0.1:1883",
                    SC_AUTO_INSTALL="0")
    net.run("edge", [*PY, "smartcommunity", "edge", "run", COMMUNITY, "--center", f"{a.addr}:1883",
                     "--copy", f"{b.addr}:1883", "--dir", str(edge_dir / "broker")], tmp / "edge-broker.log",
            edge_env, ROOT)
    wait(lambda: d.port_open("edge", 1883), 30, "the edge broker")
    net.run("edge", [*PY, "tests.drill_watch", "edge", str(edge_log)], tmp / "edge-watch.log", edge_env, ROOT)
    bridged = {f"{a.addr}:1883", f"{b.addr}:1883"}
    def up_at() -> set[str]:
        return {r["broker"] for r in lines(staff_log) if r["topic"].startswith(EDGE_STATE_ROOT) and r["alert"] == 1}

    wait(lambda: bridged <= up_at(), 30, "the edge bridged to both centers")

    gas = [dev for dev in system_registry(make_settings(edge_dir)).values()
           if dev.community == COMMUNITY and dev.kind == "gas"]
    first, second = gas[0], gas[len(gas) // 2]
    # The first leak is red ~24 s after it starts (simulators/incidents/gas_leak.yaml: ~1 %LEL a second),
    # raised by center A; center A is killed just before the second one's first red reading.
    leaks = ["--inject", f"gas_leak:{first.device_id}@+2", "--inject", f"gas_leak:{second.device_id}@+12"]
    sim = net.run("edge", [*PY, "smartcommunity", "simulate", "--community", COMMUNITY, "--no-realism", "--seed", "5",
                           *leaks], tmp / "simulate.log", edge_env, ROOT)
    started = time.time()

    def alerts_of(device: str, broker: str | None = None) -> list[dict[str, Any]]:
        return [r for r in lines(staff_log) if isinstance(r.get("alert"), dict)
                and r["alert"].get("device_id") == device and (broker is None or r["broker"] == broker)]

    def readings(device: str) -> list[tuple[float, float]]:
        return [(r["at"], r["lel"]) for r in lines(edge_log) if r.get("device") == device and r.get("lel") is not None]

    wait(lambda: alerts_of(first.device_id), 90, f"the first leak ({first.device_id}) raised by center A")
    wait(lambda: any(r.get("notified") for r in lines(staff_log)), 30, "the first leak notified")
    # The second device's next reading comes an interval after its last; the leak climbs ~10 %LEL in one:
    # A dies ~4 s before the reading expected to be red, so that reading comes while nobody runs the engine.
    step = 30.5 / 30 * second.interval_s
    at = wait(lambda: next((t for t, v in readings(second.device_id) if v + step >= RED_LEL + 1), None), 90,
              "the second leak's last reading before red")
    time.sleep(max(0.0, at + second.interval_s - 4 - time.time()))
    # Center A is lost whole: its broker, InfluxDB, ingest, engine and the database's primary.
    killed_at = time.time()
    n_killed = net.kill_host("a")
    if d.by_patroni:  # it promotes B once A's leader key has run out in etcd
        wait_role(net, d.standby, LEADER, 60)
    else:
        time.sleep(3)  # an operator's few seconds before promoting the standby
        promote(d.standby)
    promoted_at = time.time()
    wait(lambda: (d.lease(d.standby) or (0,))[0] == b.pids["alerts"], 60, "center B's engine to take over")
    takeover_s = time.time() - killed_at

    wait(lambda: any(v >= RED_LEL for _, v in readings(second.device_id)), 60, "the second leak's red reading")
    red_read = min(t for t, v in readings(second.device_id) if v >= RED_LEL)
    wait(lambda: alerts_of(second.device_id, f"{b.addr}:1883"), 60, "the second leak raised by center B")
    second_alert_s = min(r["at"] for r in alerts_of(second.device_id, f"{b.addr}:1883")) - red_read
    # Center B's dashboard shows both leaks, open, from the promoted database.
    on_wall = wait(lambda: {a["device_id"] for a in d.api("b", "/api/alerts?state=active&community=yanhu") or []
                            if a["rule"] == "gas_lel_high"} >= {first.device_id, second.device_id}, 60,
                   "both leaks on center B's dashboard")

    # The edge's cable pulled out, then plugged back in: what the devices gave it meanwhile is queued.
    net.link("edge", up=False)
    time.sleep(cut_s)
    net.link("edge", up=True)
    back_at = time.time()
    owed = {(r["device"], r["ts"]) for r in lines(edge_log) if "device" in r and r["at"] < back_at}
    stored: set[tuple[str, int]] = set()

    def caught_up() -> bool:
        nonlocal stored
        stored = d.points("b")
        return owed <= stored

    wait(caught_up, 120, "the edge's backlog at center B", every=1.0)
    backlog_s = time.time() - back_at
    sim.terminate()
    sim.wait(20)
    time.sleep(3)
    published = {(r["device"], r["ts"]) for r in lines(edge_log) if "device" in r}
    final = wait(lambda: (s := d.points("b")) and published <= s and s, 30, "every point at center B") or set()
    lost = len(published - final)

    # Alerts and notifications, as the staff saw them and as the promoted database keeps them.
    ids = {dev: {r["alert"]["alert_id"] for r in alerts_of(dev)} for dev in (first.device_id, second.device_id)}
    with psycopg.connect(d.standby.url(d.db), autocommit=True) as db:
        rows = db.execute("SELECT device_id, alert_id, state FROM alerts WHERE rule = 'gas_lel_high'").fetchall()
    notes = [r for r in lines(staff_log) if r.get("notified")]
    sent = Counter((r["notified"], r["event"], tuple(r["to"])) for r in notes)
    told = {r["notified"] for r in notes}
    figures = {
        "processes_killed_at_A": n_killed,
        "takeover_s": round(takeover_s, 1),
        "promoted_by": "patroni" if d.by_patroni else "hand",
        "promoted_after_kill_s": round(promoted_at - killed_at, 1),
        "second_red_reading_after_kill_s": round(red_read - killed_at, 1),
        "second_red_reading_to_sc_alerts_s": round(second_alert_s, 1),
        "uplink_cut_s": cut_s,
        "backlog_at_B_after_link_back_s": round(backlog_s, 1),
        "points_published": len(published),
        "points_at_B": len(final),
        "points_lost": lost,
        "alert_ids_per_leak": {k: sorted(v) for k, v in ids.items()},
        "alerts_in_store": sorted((r[0], r[1], r[2]) for r in rows),
        "notifications": len(notes),
        "notifications_sent_twice": sum(n - 1 for n in sent.values() if n > 1),
        "alerts_not_notified": sorted({i for v in ids.values() for i in v} - told),
        "both_leaks_on_B_dashboard": bool(on_wall),
        "since_devices_started_s": round(time.time() - started, 1),
    }
    print("drill figures", json.dumps(figures, ensure_ascii=False))
    return figures


def check(f: dict[str, Any]) -> None:
    assert f["takeover_s"] <= 15
    assert f["second_red_reading_to_sc_alerts_s"] <= 30
    assert f["points_lost"] == 0 and f["points_published"] > 1000
    assert all(len(v) == 1 for v in f["alert_ids_per_leak"].values()), f["alert_ids_per_leak"]  # none twice
    assert len(f["alerts_in_store"]) == 2 and {r[0] for r in f["alerts_in_store"]} == set(f["alert_ids_per_leak"])
    assert f["notifications_sent_twice"] == 0
    assert f["alerts_not_notified"] == []
    assert f["backlog_at_B_after_link_back_s"] <= 30


def test_two_centers_and_an_edge_through_the_loss_of_a_center(drill: Drill) -> None:
    check(run_drill(drill, cut_s=10))


@pytest.mark.slow
@pytest.mark.parametrize("drill", ["patroni"], indirect=True)
def test_two_centers_and_an_edge_long_with_patroni(drill: Drill) -> None:
    """The long cut, and the database failed over by Patroni on its own (no hand in it)."""
    check(run_drill(drill, cut_s=60))
