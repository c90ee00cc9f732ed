"""Per-part costs on this machine, for sizing a district or a city: `python bench/bench_costs.py`.

Real services, each started here on free loopback ports (Mosquitto, InfluxDB 1.x, and, if Debian's
`victoria-metrics` is installed, a single-node VictoriaMetrics with its data in a temp dir):

(1) ingest, one process, and (2) one alerts engine partition (every community, the 100,000-device
    registry as in bench_alerts, its series already in InfluxDB), fed together at a steady 1,000
    and 3,000 msg/s (QoS 1, two publisher processes), the engine through ingest's hand-on: CPU
    seconds per second of each process (user + system, /proc via psutil) over an 8 s window → CPU
    cores per 1,000 msg/s; the broker's and influxd's too, in the same window. Then the ceiling of
    one ingest process: the drain rate of a pre-filled backlog (bench_ingest's method), with its
    CPU over the drain.
(3) Mosquitto alone: one publisher process, one subscriber process, QoS 0 and QoS 1, as fast as
    they go: msg/s in (publisher) and out (subscriber), and Mosquitto's CPU per 1,000 msg/s. The
    Python clients may well be the limit here; Mosquitto is single-threaded, so 1,000 / (its CPU per
    1,000 msg/s) is the rate at which it would fill one core.
(4) InfluxDB 1.x write ceiling through the v1 `/write`: 4 writer processes, line protocol batches of
    5,000 of our own points (100,000 devices' series, created beforehand), for 8 s; points/s and
    influxd's CPU per 1,000 points/s. The same writers against VictoriaMetrics' `/write`.

Last, the sizing of street / district / city from these figures (`plan`), as in the README.
A benchmark, not a test: figures are printed with the load average (the 2-core box is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_alerts import NORMAL, Proc  # noqa: E402
from bench_ingest import (  # noqa: E402
    IngestProc,
    Progress,
    bench_settings,
    count_stored,
    ensure_big_registry,
    make_messages,
    publish,
)

from core import heartbeat, procs  # noqa: E402
from core.contract import Device  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import to_line  # noqa: E402
from core.registry import load_registry, write_registry  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from core.validation import validate  # noqa: E402
from ingest.fastmqtt import make_fast  # noqa: E402
from smartcommunity.services import free_port, start_influxdb, start_mosquitto  # noqa: E402

STREET_DEVICES, STREET_RATE = 3013, 236.7  # the sample registry at the simulator's street rate (msg/s)
SIZES = {"street": 3_000, "district": 30_000, "city (300k)": 300_000, "city (1M)": 1_000_000}
HEADROOM = 0.5  # every part planned at half its measured capacity: a 2x burst (catch-up after a cut) fits
HOST_CORES = 8  # hosts assumed for the plan; usable cores per host = HOST_CORES * HEADROOM
WINDOW_S, WARM_S = 8.0, 3.0
BATCH = 5000
WRITERS = 4
ROUNDS = 8  # readings per device each writer has ready: 800,000 points in all


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children."""
    with contextlib.suppress(psutil.Error):
        p = psutil.Process(pid)
        total = 0.0
        for q in (p, *p.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                t = q.cpu_times()
                total += t.user + t.system
        return total
    return 0.0


class Meter:
    """CPU cores used by each named process between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0, self.c0 = 0.0, {}
        self.cores: dict[str, float] = {}
        self.wall = 0.0

    def start(self) -> None:
        self.t0, self.c0 = time.perf_counter(), {k: cpu_seconds(p) for k, p in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.wall = time.perf_counter() - self.t0
        self.cores = {k: (cpu_seconds(p) - self.c0[k]) / self.wall for k, p in self.pids.items()}
        return self.cores


# -- (1) + (2): ingest and one engine partition at steady rates ------------------------------------
def steady(s: Settings, devices: list[Device], tmp: Path, pids: dict[str, int],
           rates: tuple[int, ...]) -> tuple[dict[str, float], list[dict[str, float]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")} | s.env()
    env |= {"SC_ALERT_HOLDOFF_S": "5"}
    ing = IngestProc(s, 1, tmp / "ingest-steady.log")
    ing.start()
    alerts = Proc("alerts", env, tmp / "alerts.log")
    out = []
    try:
        ing.wait_connected(120)
        beat = s.data_path / "run" / "alerts.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if beat.exists() and orjson.loads(beat.read_bytes()).get("mqtt") == "ok":
                break
            time.sleep(0.2)
        assert ing.proc
        meter = Meter(pids | {"ingest": ing.proc.pid, "alerts": alerts.p.pid})
        settle(pids["influxd"], longest_s=20)
        meter.start()  # connected, nothing to do: the part of their cost that is not per message
        time.sleep(WARM_S + 1)
        idle = meter.stop()
        for rate in rates:
            n = int(rate * (WARM_S + WINDOW_S + 4))
            msgs = [(t, orjson.dumps({"ts": 0, "m": NORMAL[d.kind]}))
                    for t, d in ((f"sc/{d.community}/{d.kind}/{d.device_id}/telemetry", d)
                                 for d in (devices[i % len(devices)] for i in range(n)))]
            done = threading.Event()
            offered: list[float] = []

            def feed(m: list[tuple[str, bytes]], r: int, res: list[float], ev: threading.Event) -> None:
                res.append(publish(s.mqtt.port, m, rate=r))
                ev.set()

            threading.Thread(target=feed, args=(msgs, rate, offered, done), daemon=True).start()
            time.sleep(WARM_S)
            a0, n0 = alerts_received(s), ing.total("stored", "deadlettered", "spooled")
            meter.start()
            time.sleep(WINDOW_S)
            cores = meter.stop()
            a1, n1 = alerts_received(s), ing.total("stored", "deadlettered", "spooled")
            done.wait(120)
            got = (n1 - n0) / meter.wall
            out.append({"rate": got, "alerts_rate": (a1 - a0) / meter.wall, "offered": offered[0] if offered else 0,
                        **{f"cpu_{k}": v for k, v in cores.items()}})
            time.sleep(2)
    finally:
        alerts.stop()
        ing.stop()
    return idle, out


def alerts_received(s: Settings) -> int:
    return sum(int(h["counters"].get("received", 0)) for h in heartbeat.read_all(s.data_path, "alerts")
               if "counters" in h)


def ingest_ceiling(s: Settings, msgs: list[tuple[str, bytes]], tmp: Path) -> tuple[float, float, int]:
    """bench_ingest's drain of a pre-filled backlog by one ingest process, with its CPU between 10 % and
    90 % of the backlog: (msg/s, cores, valid messages not stored)."""
    influx = InfluxClient(s.influx_url, s.influx_db, timeout_s=300)
    influx.create_database()
    before = count_stored(influx)
    ing = IngestProc(s, 1, tmp / "ingest-ceiling.log")
    ing.start()
    ing.wait_connected()  # its session and subscription exist; now it goes away
    ing.stop()
    publish(s.mqtt.port, msgs)
    prog = Progress(len(msgs))
    ing.start()
    assert ing.proc
    meter = Meter({"ingest": ing.proc.pid})
    deadline = time.monotonic() + 300
    while not prog.done.is_set() and time.monotonic() < deadline:
        done = ing.total("stored", "deadlettered", "spooled")
        if done > prog.n:
            was = bool(prog.t10), bool(prog.t90)
            prog.add(done - prog.n)
            if prog.t10 and not was[0]:
                meter.start()
            if prog.t90 and not was[1]:
                meter.stop()
        time.sleep(0.05)
    ing.stop()
    return prog.rate(), meter.cores.get("ingest", float("nan")), len(msgs) - (count_stored(influx) - before)


# -- (3): Mosquitto alone -------------------------------------------------------------------------
def sub_proc(port: int, qos: int, n: int, ready: Any, out: Any) -> None:
    prog = Progress(n)
    last = [time.perf_counter()]

    def on_message(*a: Any) -> None:
        prog.add()
        last[0] = time.perf_counter()

    subscribed = threading.Event()
    c = make_fast(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}",
                              protocol=mqtt.MQTTv5))
    c.on_connect = lambda cl, *a: cl.subscribe("bench/ceiling", qos=qos)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.wait(10)
    ready.set()
    while not prog.done.is_set() and time.perf_counter() - last[0] < 5:
        prog.done.wait(0.2)
    c.disconnect()
    c.loop_stop()
    out.put(("sub", prog.n, prog.rate()))


def pub_proc(port: int, qos: int, n: int, payload: bytes, go: Any, out: Any) -> None:
    c = make_fast(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
                              protocol=mqtt.MQTTv5))
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    go.wait(30)
    window: list[Any] = []
    t0 = time.perf_counter()
    for _ in range(n):
        window.append(c.publish("bench/ceiling", payload, qos=qos))
        if len(window) > 20000:  # paho mids wrap at 65535
            window.pop(0).wait_for_publish(60)
    for info in window:
        info.wait_for_publish(60)
    out.put(("pub", n, n / (time.perf_counter() - t0)))
    c.disconnect()
    c.loop_stop()


def broker_ceiling(port: int, broker_pid: int, qos: int, n: int, payload: bytes) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
    sub = procs.process(ctx, sub_proc, (port, qos, n, ready, q))
    pub = procs.process(ctx, pub_proc, (port, qos, n, payload, go, q))
    sub.start()
    ready.wait(30)
    pub.start()
    time.sleep(1.0)  # the publisher connects (imports take most of it)
    meter = Meter({"mosquitto": broker_pid})
    meter.start()
    go.set()
    res = {k: (m, r) for k, m, r in (q.get(timeout=300) for _ in range(2))}
    cores = meter.stop()["mosquitto"]
    pub.join(30)
    sub.join(30)
    received = res["sub"][0]
    # The subscriber gives up 5 s after the last message: not broker work, taken off the window.
    busy = max(meter.wall - (5.0 if received < n else 0.0), 1e-3)
    cores = cores * meter.wall / busy
    return {"in": res["pub"][1], "out": res["sub"][1], "received": received, "sent": n, "cores": cores,
            "cpu_per_1000": cores / (res["sub"][1] / 1000) if res["sub"][1] else float("nan")}


# -- (4): time-series write ceiling ---------------------------------------------------------------
def line_prefixes(devices: list[Device], now_ms: int) -> list[str]:
    """Our own line protocol for one reading of every device, without the timestamp."""
    registry = {d.device_id: d for d in devices}
    msgs = make_messages(devices, len(devices), now_ms)
    return [to_line(validate(t, p, registry, now_ms)).rsplit(" ", 1)[0] for t, p in msgs]


def write_proc(url: str, prefixes: list[str], base_ms: int, seconds: float, go: Any, out: Any) -> None:
    """POST batches built beforehand (so that the writers spend their CPU on HTTP, not on strings),
    one reading a second per device, until they run out or `seconds` pass."""
    bodies = [(b := "\n".join(f"{p} {base_ms + rnd * 1000}" for p in prefixes[i:i + BATCH]).encode(),
               b.count(b"\n") + 1)
              for rnd in range(ROUNDS) for i in range(0, len(prefixes), BATCH)]
    sess = requests.Session()
    points = errors = 0
    go.wait(60)
    t0 = time.perf_counter()
    for body, k in bodies:
        r = sess.post(url, data=body, timeout=120)
        if r.status_code == 204:
            points += k
        else:
            errors += 1
        if time.perf_counter() - t0 >= seconds:
            break
    out.put((points, time.perf_counter() - t0, errors))


def write_ceiling(url: str, pid: int, prefixes: list[str], base_ms: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q, go = ctx.Queue(), ctx.Event()
    parts = [prefixes[i::WRITERS] for i in range(WRITERS)]
    ws = [procs.process(ctx, write_proc, (url, p, base_ms, seconds, go, q)) for p in parts]
    for w in ws:
        w.start()
    time.sleep(4.0)  # writers import and build their batches
    meter = Meter({"db": pid})
    meter.start()
    go.set()
    res = [q.get(timeout=seconds + 300) for _ in ws]
    cores = meter.stop()["db"]
    for w in ws:
        w.join(30)
    points = sum(r[0] for r in res)
    rate = points / max(r[1] for r in res)
    return {"rate": rate, "cores": cores, "cpu_per_1000": cores / (rate / 1000) if rate else float("nan"),
            "errors": sum(r[2] for r in res)}


def settle(pid: int, below: float = 0.1, quiet_s: int = 4, longest_s: float = 40.0) -> float:
    """Wait until a process used less than `below` cores in each of `quiet_s` seconds in a row (InfluxDB
    compacts what it was just given, some seconds later); returns the seconds waited."""
    t0, quiet = time.monotonic(), 0
    while quiet < quiet_s and time.monotonic() - t0 < longest_s:
        c0 = cpu_seconds(pid)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(pid) - c0 < below else 0
    return time.monotonic() - t0


def warm(url: str, prefixes: list[str], ts_ms: int) -> None:
    """One point per series first: creating 100,000 series is a one-off cost, not the steady one."""
    for i in range(0, len(prefixes), BATCH):
        r = requests.post(url, data="\n".join(f"{p} {ts_ms}" for p in prefixes[i:i + BATCH]).encode(), timeout=300)
        r.raise_for_status()


def start_victoria(tmp: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("victoria-metrics")
    if not binary:
        return None
    port = free_port()
    log = (tmp / "vm.log").open("wb")
    p = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp / 'vm'}",
                          "-retentionPeriod=1", "-loggerLevel=ERROR"],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=procs.preexec())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return p, port
        time.sleep(0.2)
    p.kill()
    return None


# -- sizing ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Part:
    """One instance of a part: `fixed` cores while connected and idle, `marginal` cores per 1,000 msg/s
    on top (from the highest steady rate), and the most msg/s one instance took here (0: not measured)."""

    fixed: float
    marginal: float
    ceiling: float = 0.0

    def capacity(self, cores: float = 1.0) -> float:
        """msg/s one instance is planned for: HEADROOM of `cores`, and of its measured ceiling."""
        by_cpu = max(HEADROOM * cores - self.fixed, 0.0) / max(self.marginal, 1e-6) * 1000
        return min(by_cpu, HEADROOM * self.ceiling) if self.ceiling else by_cpu

    def cores(self, rate: float, instances: int = 1) -> float:
        return instances * self.fixed + rate / 1000 * self.marginal


def plan(devices: int, parts: dict[str, Part], db_ceiling: float) -> dict[str, Any]:
    """Instances of each single-threaded part (broker, ingest, alerts: one core each) for `devices` at
    the street's rate per device, the cores they use, the share of one InfluxDB 1.x (its measured write
    ceiling here), and hosts of HOST_CORES cores kept at HEADROOM."""
    rate = devices * STREET_RATE / STREET_DEVICES
    n = {k: max(1, math.ceil(rate / parts[k].capacity())) for k in ("broker", "ingest", "alerts")}
    cores = {k: parts[k].cores(rate, n.get(k, 1)) for k in parts}
    total = sum(cores.values())
    return {"devices": devices, "rate": rate, "n": n, "cores": cores, "total": total,
            "db_load": rate / db_ceiling, "hosts": max(1, math.ceil(total / (HOST_CORES * HEADROOM)))}


def print_plan(parts: dict[str, Part], db_ceiling: float) -> None:
    print(f"sizing at {STREET_RATE / STREET_DEVICES * 1000:.1f} msg/s per 1,000 devices (street: "
          f"{STREET_RATE} msg/s for {STREET_DEVICES:,}), every part at {HEADROOM:.0%} of a core and of its "
          f"ceiling, hosts of {HOST_CORES} cores at {HEADROOM:.0%}; per instance: "
          + ", ".join(f"{k} {p.capacity():,.0f} msg/s" for k, p in parts.items() if k != "influxd"))
    for name, devices in SIZES.items():
        p = plan(devices, parts, db_ceiling)
        cs = ", ".join(f"{k} {v:.2f}" for k, v in p["cores"].items())
        print(f"  {name:12s} {devices:>9,} devices {p['rate']:>8,.0f} msg/s: brokers {p['n']['broker']}, ingest "
              f"workers {p['n']['ingest']}, alert partitions {p['n']['alerts']}, one InfluxDB 1.x at "
              f"{p['db_load']:.0%} of its write ceiling here; cores {cs} (total {p['total']:.2f}): hosts {p['hosts']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backlog", type=int, default=100_000, help="messages drained for ingest's ceiling")
    ap.add_argument("--write-seconds", type=float, default=8.0)
    ap.add_argument("--rates", type=lambda v: tuple(int(x) for x in v.split(",")), default=(1000, 3000),
                    help="steady rates, msg/s (comma-separated)")
    args = ap.parse_args()
    load0 = os.getloadavg()
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-costs-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    base = bench_settings(tmp, env)
    services = [start_mosquitto(base), start_influxdb(base)]
    mosq, influx = services[0].proc.pid, services[1].proc.pid
    vm: subprocess.Popen[bytes] | None = None
    try:
        how = ensure_big_registry(base.registry_path, base.data_path, 100_000)
        devices = sorted(load_registry(base.registry_path).values(), key=lambda d: d.device_id)
        # Each device nominally reports every 10 min: at 1,000-3,000 msg/s over 100,000 devices none
        # falls silent in the run, so the engine's cost is its rules, not a flood of silence alerts.
        slow = tmp / "registry-600s.geojson"
        write_registry(slow, [dataclasses.replace(d, interval_s=600.0) for d in devices])
        print(f"registry: {len(devices):,} devices ({how}); machine: {os.cpu_count()} CPUs; "
              f"load average {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f} at start")

        # One database for every phase, its 100,000 devices' series created first, as in a running city:
        # InfluxDB creating them on first sight (and compacting its index afterwards, for tens of seconds
        # here) is a one-off cost that would otherwise weigh on whichever phase met them first.
        s1 = load_settings(env, **{**base.__dict__, "influx_db": "bench", "ingest_client_id": "bench-steady",
                                   "registry_file": str(slow)})
        prefixes = line_prefixes(devices, int(time.time() * 1000))
        url = f"{base.influx_url}/write?db=bench&precision=ms"
        InfluxClient(s1.influx_url, s1.influx_db).create_database()
        warm(url, prefixes, int(time.time() * 1000) - 7_200_000)
        idle, st = steady(s1, devices, tmp, {"mosquitto": mosq, "influxd": influx}, args.rates)
        print(f"(1,2) connected, idle: cores used: ingest {idle['ingest']:.3f}, alerts engine {idle['alerts']:.3f}, "
              f"mosquitto {idle['mosquitto']:.3f}, influxd {idle['influxd']:.3f}")
        for r in st:
            per = 1000 / r["rate"]
            print(f"(1,2) steady {r['rate']:,.0f} msg/s stored by ingest (offered {r['offered']:,.0f}; the engine "
                  f"received {r['alerts_rate']:,.0f} records/s): cores used: ingest {r['cpu_ingest']:.3f}, alerts "
                  f"engine {r['cpu_alerts']:.3f}, mosquitto {r['cpu_mosquitto']:.3f}, influxd {r['cpu_influxd']:.3f}"
                  f" = per 1,000 msg/s: ingest {r['cpu_ingest'] * per:.3f}, alerts {r['cpu_alerts'] * per:.3f}, "
                  f"mosquitto {r['cpu_mosquitto'] * per:.3f}, influxd {r['cpu_influxd'] * per:.3f}")
        s2 = load_settings(env, **{**base.__dict__, "influx_db": "bench", "ingest_client_id": "bench-ceil"})
        msgs = make_messages(devices, args.backlog, int(time.time() * 1000) - 3_600_000)
        ceil_rate, ceil_cores, lost = ingest_ceiling(s2, msgs, tmp)
        print(f"(1) ingest ceiling, 1 process, draining {args.backlog:,} QoS 1 messages: {ceil_rate:,.0f} msg/s, "
              f"{ceil_cores:.2f} cores = {ceil_cores / ceil_rate * 1000:.3f} cores per 1,000 msg/s "
              f"(not stored: {lost})")

        payload = msgs[0][1]
        bq = {}
        for qos, n in ((0, 100_000), (1, 60_000)):
            b = broker_ceiling(base.mqtt.port, mosq, qos, n, payload)
            bq[qos] = b
            print(f"(3) Mosquitto QoS {qos}, 1 publisher -> 1 subscriber ({len(payload)} B payload): in "
                  f"{b['in']:,.0f} msg/s, out {b['out']:,.0f} msg/s, received {b['received']:,}/{b['sent']:,}; "
                  f"mosquitto {b['cores']:.2f} cores = {b['cpu_per_1000']:.3f} cores per 1,000 msg/s "
                  f"(one core full at {1000 / b['cpu_per_1000']:,.0f} msg/s)")

        base_ms = int(time.time() * 1000) - 600_000
        settle(influx, longest_s=20)
        w = write_ceiling(url, influx, prefixes, base_ms, args.write_seconds)
        print(f"(4) InfluxDB 1.x /write, {WRITERS} writers, batches of {BATCH:,}, {len(prefixes):,} series: "
              f"{w['rate']:,.0f} points/s, influxd {w['cores']:.2f} cores = {w['cpu_per_1000']:.3f} cores per "
              f"1,000 points/s (errors {w['errors']})")
        started = start_victoria(tmp)
        if started:
            vm, vport = started
            vurl = f"http://127.0.0.1:{vport}/write?db=sc&precision=ms"
            warm(vurl, prefixes, base_ms - 60_000)
            settle(vm.pid, longest_s=10)
            v = write_ceiling(vurl, vm.pid, prefixes, base_ms, args.write_seconds)
            print(f"    VictoriaMetrics (single node, Debian's) /write, same writers: {v['rate']:,.0f} points/s, "
                  f"{v['cores']:.2f} cores = {v['cpu_per_1000']:.3f} cores per 1,000 points/s (errors {v['errors']}) "
                  f"= {v['rate'] / w['rate']:.2f} x InfluxDB")
        else:
            print("    VictoriaMetrics not installed (apt-get install victoria-metrics): not measured")

        hi = st[-1]

        def part(k: str, ceiling: float = 0.0) -> Part:
            return Part(idle[k], max(hi[f"cpu_{k}"] - idle[k], 0.0) / hi["rate"] * 1000, ceiling)

        parts = {"broker": part("mosquitto", 1000 / bq[1]["cpu_per_1000"]), "ingest": part("ingest", ceil_rate),
                 "alerts": part("alerts"),
                 # influxd compacts in bursts (its steady-window figure swings tenfold between runs): planned
                 # from the write test's sustained cost per 1,000 points/s instead.
                 "influxd": Part(0.0, w["cpu_per_1000"])}
        print("      per instance, cores = fixed + marginal per 1,000 msg/s (marginal from the "
              f"{hi['rate']:,.0f} msg/s run): " + "; ".join(f"{k} {p.fixed:.3f} + {p.marginal:.3f}"
                                                          for k, p in parts.items()))
        print_plan(parts, w["rate"])
        load1 = os.getloadavg()
        print(f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end; {time.monotonic() - t_start:.0f} s")
    finally:
        if vm:
            vm.terminate()
            vm.wait(15)
        for svc in services:
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
