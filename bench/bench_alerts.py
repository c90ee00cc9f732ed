"""Alert engine benchmark: figures printed, goals named, misses included.

    python bench/bench_alerts.py [--records 300000] [--lag-seconds 20] [--skip-lag | --only-lag] [--street]

(a) rule evaluation throughput on one core, every default rule, the 100,000-device registry: a message
    is validated once, by ingest, which hands the accepted record on (ingest/forward.py: encoded in
    batches); the alert service decodes and evaluates it (`Engine.handle`). Each step timed alone, against
    `validate` alone in the same run, and validate + encode + decode + handle together: the whole
    per-message cost of the warning path on one core [goal >= 60,000 msg/s]
(b) resident memory of a process holding the engine after every device reported [goal < 300 MB]
(c) the silence / place scan over 100,000 devices, per pass (quiet, and with a compound down)
    [goal < 50 ms]
(d) publish -> alert on sc/alerts latency, p50 / p99, with 5,000 msg/s of background telemetry
    through the full system (Mosquitto, InfluxDB, ingest, alerts, each its own process on this
    2-core machine; probes taken in turn from every community) [goal p99 < 200 ms, p50 < 50 ms];
    `--street`: with the street's own (bundled) registry instead of the 100,000-device one
    [goal p99 < 100 ms]. bench_partitions.py runs this phase with one engine against two partitions.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import gc
import logging
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import ensure_big_registry, pct, publish  # noqa: E402

from alerts.engine import Engine  # noqa: E402
from alerts.partition import suffix  # noqa: E402
from alerts.rules import load_ruleset  # noqa: E402
from alerts.store import AlertStore  # noqa: E402
from core.contract import Device  # noqa: E402
from core.registry import bundled_registry_path, load_registry, write_registry  # noqa: E402
from core.settings import load_settings  # noqa: E402
from core.validation import validate  # noqa: E402
from ingest.forward import FORWARD_MAX, RECORDS_ROOT, decode, encode  # noqa: E402
from smartcommunity.services import free_port, start_influxdb, start_mosquitto  # noqa: E402

# Normal readings per kind (every metric a rule looks at), with ~1 in 2,000 over a threshold.
NORMAL = {"gas": {"lel_pct": 1.0, "co_ppm": 3.0}, "water": {"pressure_mpa": 0.32, "flow_m3h": 4.0, "leak": False},
          "power": {"voltage_v": 224.0, "current_a": 20.0, "leakage_ma": 30.0, "temp_c": 41.0},
          "camera": {"online": True, "fps": 25.0, "bitrate_kbps": 2048.0}}
HOT = {"gas": {"lel_pct": 30.0}, "water": {"leak": True}, "power": {"temp_c": 75.0}, "camera": {"online": False}}


def records(devices: list[Device], n: int, base_ms: int) -> list[tuple[str, bytes]]:
    rnd = random.Random(7)
    out = []
    nd = len(devices)
    for i in range(n):
        d = devices[i % nd]
        m = dict(NORMAL[d.kind])
        if rnd.random() < 0.0005:
            m.update(HOT[d.kind])
        out.append((f"sc/{d.community}/{d.kind}/{d.device_id}/telemetry",
                    orjson.dumps({"ts": base_ms + (i // nd) * 1000, "m": m})))
    return out


def engine_phase(registry_path: str, n: int, out: Any) -> None:
    """(a), (b), (c) in a fresh process: its RSS is the registry's plus the engine's. The input is made
    in chunks (not timed) so that the benchmark's own messages do not count as engine memory."""
    logging.disable(logging.WARNING)
    proc = psutil.Process()
    reg = load_registry(Path(registry_path))
    devices = sorted(reg.values(), key=lambda d: d.device_id)
    gc.collect()
    rss0 = proc.memory_info().rss
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-eng-"))
    store = AlertStore(tmp / "a.sqlite")
    published: list[Any] = []
    clock = [time.time()]
    engine = Engine(load_ruleset(), store, published.append, 60.0, 1.0, clock=lambda: clock[0], fold_window_s=30)
    now_ms = int(time.time() * 1000)
    t_v = t_h = t_e = t_dh = 0.0
    done = 0
    chunk = 5_000
    while done < n:
        k = min(chunk, n - done)
        msgs = records(devices[done % len(devices):] + devices[: done % len(devices)], k,
                       now_ms - 3_600_000 + done)
        t0 = time.perf_counter()
        recs = [validate(t, p, reg, now_ms) for t, p in msgs]
        t_v += time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in recs:
            engine.handle(r)
        t_h += time.perf_counter() - t0
        t0 = time.perf_counter()  # ingest hands the accepted records on, in batches
        batches = [encode(recs[i:i + FORWARD_MAX]) for i in range(0, len(recs), FORWARD_MAX)]
        t_e += time.perf_counter() - t0
        t0 = time.perf_counter()  # the alert service: decode, evaluate (the same records again)
        handle = engine.handle
        for b in batches:
            for r in decode(b, reg)[0]:
                handle(r)
        t_dh += time.perf_counter() - t0
        done += k
        del msgs, recs, batches
    v_rate, h_rate, e_rate, dh_rate = n / t_v, n / t_h, n / t_e, n / t_dh
    vh_rate = n / (t_v + t_e + t_dh)
    t0 = time.perf_counter()
    engine.tick()  # saves conditions and last-heard times
    save_s = time.perf_counter() - t0
    # (c) scan: quiet passes, then one compound down
    passes = []
    engine.check_silence(reg)  # builds the liveness arrays
    live = engine.live
    assert live is not None
    for _ in range(20):  # every device keeps reporting: a quiet pass
        clock[0] += 1
        live.last[:] = clock[0] - 1
        t0 = time.perf_counter()
        engine.check_silence(reg)
        passes.append(time.perf_counter() - t0)
    quiet = passes[2:]
    sizes = collections.Counter(d.compound_id for d in devices)
    cmp = sorted(sizes, key=lambda c: abs(sizes[c] - 1000))[0]  # a compound of about 1,000 devices
    others = np.array([d.compound_id != cmp for d in live.devices])
    down = []
    for _ in range(30):  # the compound's network is cut: 150 s of passes every 5 s
        clock[0] += 5
        live.last[others] = clock[0] - 1
        t0 = time.perf_counter()
        engine.check_silence(reg)
        down.append(time.perf_counter() - t0)
    gc.collect()
    rss = proc.memory_info().rss
    places = sorted({a.rule for a in published if a.rule in ("compound_silent", "community_silent")})
    out.put({"v": v_rate, "h": h_rate, "e": e_rate, "dh": dh_rate, "vh": vh_rate, "save_s": save_s, "rss0": rss0,
             "rss": rss,
             "scan_p50": pct(quiet, 0.5), "scan_max": max(quiet), "down_p50": pct(down, 0.5), "down_max": max(down),
             "alerts": len({a.alert_id for a in published}), "places": places, "cmp": f"{cmp} ({sizes[cmp]})"})


class Proc:
    """A part of the system in its own process; `cpu`: pinned to that core (stands for a host of its own)."""

    def __init__(self, verb: str, env: dict[str, str], log: Path, args: tuple[str, ...] = (),
                 cpu: int | None = None, beat: tuple[Path, str] | None = None) -> None:
        self.fh = log.open("wb")
        self.beat = beat  # its heartbeat file and the key there of its backlog (what waits for its thread)
        pin = None if cpu is None else functools.partial(os.sched_setaffinity, 0, {cpu})
        self.p = subprocess.Popen([sys.executable, "-m", "smartcommunity", verb, *args], env=env, cwd=ROOT,
                                  stdout=self.fh, stderr=subprocess.STDOUT, preexec_fn=pin)
        self.peak = 0
        self.cpu_s = 0.0  # user + system seconds, as last sampled
        self.cores: list[int] = []  # the cores it may run on, as read back
        self.backlog = 0  # the largest backlog its heartbeat showed

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            ps = psutil.Process(self.p.pid)
            self.peak = max(self.peak, ps.memory_info().rss)
            t = ps.cpu_times()
            self.cpu_s = t.user + t.system
            self.cores = ps.cpu_affinity()
        if self.beat is not None:
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                self.backlog = max(self.backlog, orjson.loads(self.beat[0].read_bytes()).get(self.beat[1]) or 0)

    def stop(self) -> None:
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.fh.close()


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """One alert engine of the lag phase: its communities (None: the whole street), its core (None: any)."""

    communities: frozenset[str] | None = None
    cpu: int | None = None

    @property
    def name(self) -> str:
        return "alerts" + suffix(self.communities)

    def args(self) -> tuple[str, ...]:
        return () if self.communities is None else ("--communities", ",".join(sorted(self.communities)))


def spread(devices: list[Device], n: int) -> list[Device]:
    """n of the devices, taken in turn from each community: every partition gets its share of probes."""
    by: dict[str, collections.deque[Device]] = {}
    for d in devices:
        by.setdefault(d.community, collections.deque()).append(d)
    out: list[Device] = []
    while len(out) < n and any(by.values()):
        for q in by.values():
            if q and len(out) < n:
                out.append(q.popleft())
    return out


def lag_phase(tmp: Path, registry: Path, devices: list[Device], seconds: float,
              engines: tuple[EngineSpec, ...] = (EngineSpec(),)) -> dict[str, Any]:
    # The background reaches each of the 100,000 devices every 20 s (5,000 msg/s): their nominal
    # interval is set to 60 s so that they are not silent — this phase measures latency, not a flood.
    devices = [dataclasses.replace(d, interval_s=60.0) for d in devices]
    registry = tmp / "registry-60s.geojson"
    write_registry(registry, devices)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    s = load_settings(env, data_dir=str(tmp / "var"), mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                      influx_url=f"http://127.0.0.1:{free_port()}", log_level="WARNING",
                      registry_file=str(registry))
    services = [start_mosquitto(s), start_influxdb(s)]
    penv = env | {"SC_MQTT_URL": s.mqtt_url, "SC_INFLUX_URL": s.influx_url, "SC_DATA_DIR": str(s.data_path),
                  "SC_REGISTRY_FILE": str(registry), "SC_LOG_LEVEL": "WARNING", "SC_ALERT_HOLDOFF_S": "5"}
    run = s.data_path / "run"
    ingest = Proc("ingest", penv, tmp / "ingest.log", beat=(run / "ingest-0.json", "queued_batches"))
    alerts = [Proc("alerts", penv, tmp / f"{e.name}.log", e.args(), e.cpu, (run / f"{e.name}.json", "queue"))
              for e in engines]
    try:
        beats = [run / f"{e.name}.json" for e in engines]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(b.exists() and orjson.loads(b.read_bytes()).get("mqtt") == "ok" for b in beats):
                break
            time.sleep(0.5)
        gas = [d for d in devices if d.kind == "gas"]
        probes = spread(gas, int(seconds * 5) + 10)
        taken = {d.device_id for d in probes}
        rest = [d for d in devices if d.kind != "gas"] + [d for d in gas if d.device_id not in taken]
        n = int(5000 * seconds)
        # Normal readings (no alerts from the background: it is load, not incidents); "ts":0 is
        # replaced by the publish time in bench_ingest.publish_proc.
        bg_msgs = [(f"sc/{d.community}/{d.kind}/{d.device_id}/telemetry",
                    orjson.dumps({"ts": 0, "m": NORMAL[d.kind]}))
                   for d in (rest[i % len(rest)] for i in range(n))]
        sent: dict[str, float] = {}
        got: dict[str, float] = {}
        # When ingest handed each probe's record on (seen in its batch on the records topic): splits
        # the latency into the shared path (publish -> ingest -> hand-on) and the engine's part.
        handed: dict[str, float] = {}
        waiting: set[bytes] = set()
        ready = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic.startswith(RECORDS_ROOT):
                for k in tuple(waiting):
                    if k in msg.payload:
                        handed[k[1:-1].decode()] = time.perf_counter()
                        waiting.discard(k)
            elif msg.payload and not msg.retain:
                a = orjson.loads(msg.payload)
                if a.get("rule") == "gas_lel_high" and a["device_id"] not in got:
                    got[a["device_id"]] = time.perf_counter()

        sub.on_message = on_message
        sub.on_connect = lambda c, *a: c.subscribe([("sc/alerts/#", 1), (f"{RECORDS_ROOT}/#", 0)])
        sub.on_subscribe = lambda *a: ready.set()
        sub.connect("127.0.0.1", s.mqtt.port)
        sub.loop_start()
        ready.wait(10)
        pc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:6]}")
        pc.connect("127.0.0.1", s.mqtt.port)
        pc.loop_start()
        result: list[float] = []
        done = threading.Event()

        def bg() -> None:
            result.append(publish(s.mqtt.port, bg_msgs, rate=5000))
            done.set()

        threading.Thread(target=bg, daemon=True).start()
        time.sleep(2.0)  # let the background reach its rate
        for a in (*alerts, ingest):
            a.sample()
        cpu0 = [a.cpu_s for a in alerts]
        ingest_cpu0 = ingest.cpu_s
        t_cpu = time.perf_counter()
        i = 0
        while not done.is_set() and i < len(probes):
            d = probes[i]
            i += 1
            waiting.add(b'"%s"' % d.device_id.encode())
            sent[d.device_id] = time.perf_counter()
            pc.publish(f"sc/{d.community}/gas/{d.device_id}/telemetry",
                       orjson.dumps({"ts": int(time.time() * 1000), "m": {"lel_pct": 30.0}}), qos=1)
            for a in alerts:
                a.sample()
            ingest.sample()
            time.sleep(0.2)
        done.wait(seconds * 3 + 60)
        for a in (*alerts, ingest):  # CPU over the probes and the background, before the wait for stragglers
            a.sample()
        window = time.perf_counter() - t_cpu
        time.sleep(2.0)
        # On a loaded machine the engine may still be working through the backlog: a probe whose alert
        # comes late is a late alert (it counts in p99), not a missing one; waited for up to 60 s more.
        late = time.monotonic() + 60
        while any(k not in got for k in sent) and time.monotonic() < late:
            time.sleep(0.2)
        lags = [got[k] - t for k, t in sent.items() if k in got]
        missing = len(sent) - len(lags)
        community = {d.device_id: d.community for d in probes}
        per_engine = []
        for e, a, c0 in zip(engines, alerts, cpu0, strict=True):
            mine = [k for k in sent if e.communities is None or community[k] in e.communities]
            per_engine.append({"name": e.name, "cores": a.cores, "rss": a.peak, "backlog": a.backlog,
                               "cpu_s": a.cpu_s - c0, "cpu_share": (a.cpu_s - c0) / window, "probes": len(mine),
                               "lags": [got[k] - sent[k] for k in mine if k in got],
                               "engine_lags": [got[k] - handed[k] for k in mine if k in got and k in handed]})
        pc.loop_stop()
        pc.disconnect()
        sub.loop_stop()
        sub.disconnect()
        return {"lags": lags, "missing": missing, "offered": result[0] if result else 0.0,
                "alerts_rss": max(a.peak for a in alerts), "ingest_rss": ingest.peak, "probes": len(sent),
                "engines": per_engine, "ingest_cpu_share": (ingest.cpu_s - ingest_cpu0) / window,
                "ingest_backlog": ingest.backlog, "handed": [handed[k] - sent[k] for k in sent if k in handed],
                "engine_lags": [got[k] - handed[k] for k in sent if k in got and k in handed]}
    finally:
        for a in alerts:
            a.stop()
        ingest.stop()
        for svc in services:
            svc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--lag-seconds", type=float, default=20.0)
    ap.add_argument("--skip-lag", action="store_true")
    ap.add_argument("--only-lag", action="store_true")
    ap.add_argument("--street", action="store_true", help="(d) also with the street's own (bundled) registry")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    registry = tmp / "registry.geojson"
    how = ensure_big_registry(registry, tmp / "var", 100_000)
    devices = sorted(load_registry(registry).values(), key=lambda d: d.device_id)
    n_rules = len(load_ruleset().rules)
    print(f"registry: {len(devices)} devices ({how}); {n_rules} rules; machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if not args.only_lag:
        engine_figures(registry, args.records, len(devices))
    if not args.skip_lag:
        lag_figures(tmp, registry, devices, args.lag_seconds)
    if args.street:
        street = sorted(load_registry(bundled_registry_path()).values(), key=lambda d: d.device_id)
        (tmp / "street").mkdir()
        lag_figures(tmp / "street", registry, street, args.lag_seconds, goal_p99=0.1)
    print(f"load average at end {os.getloadavg()[0]:.1f} (other work on this machine skews absolute figures)")
    return 0


def engine_figures(registry: Path, records_n: int, n_devices: int) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=engine_phase, args=(str(registry), records_n, q))
    p.start()
    r = q.get(timeout=1800)
    p.join()
    ok = r["vh"] >= 60_000
    print(f"(a) validate alone (ingest, once per message):  {r['v']:9,.0f} msg/s = 1.00")
    print(f"    encode, handing records on (ingest):        {r['e']:9,.0f} msg/s = {r['e'] / r['v']:.2f} x validate")
    print(f"    Engine.handle on validated records:         {r['h']:9,.0f} msg/s = {r['h'] / r['v']:.2f} x validate")
    print(f"    decode + handle (the alert service's path): {r['dh']:9,.0f} msg/s = {r['dh'] / r['v']:.2f} x validate")
    print(f"    validate + encode + decode + handle:        {r['vh']:9,.0f} msg/s = {r['vh'] / r['v']:.2f} x validate"
          f"   [goal >= 60,000] {'MET' if ok else 'MISSED'}   ({r['alerts']} alerts raised; saving the state of "
          f"100,000 devices took {r['save_s'] * 1000:.0f} ms)")
    rss_ok = "MET" if r["rss"] < 300 * 2**20 else "MISSED"
    print(f"(b) engine process RSS after every device reported: {r['rss'] / 2**20:.0f} MB "
          f"(the registry and imports alone {r['rss0'] / 2**20:.0f} MB) [goal < 300 MB] {rss_ok}")
    print(f"(c) silence/place scan over {n_devices:,} devices: quiet p50 {r['scan_p50'] * 1000:.1f} ms, "
          f"max {r['scan_max'] * 1000:.1f} ms; with compound {r['cmp']} down p50 {r['down_p50'] * 1000:.1f} ms, "
          f"max {r['down_max'] * 1000:.1f} ms (place alerts: {r['places']}) [goal < 50 ms] "
          f"{'MET' if max(r['scan_max'], r['down_p50']) < 0.05 else 'MISSED'}")


def lag_figures(tmp: Path, registry: Path, devices: list[Device], seconds: float, goal_p99: float = 0.2) -> None:
    d = lag_phase(tmp, registry, devices, seconds)
    p50, p99 = pct(d["lags"], 0.5), pct(d["lags"], 0.99)
    ok = p99 < goal_p99 and p50 < 0.05 and not d["missing"]
    print(f"(d) publish -> sc/alerts at {d['offered']:,.0f} msg/s background, {len(devices):,}-device registry "
          f"(ingest + alerts + Mosquitto + InfluxDB): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max "
          f"{max(d['lags'], default=0) * 1000:.0f} ms over {len(d['lags'])} probes ({d['missing']} without an alert) "
          f"[goal p99 < {goal_p99 * 1000:.0f} ms, p50 < 50 ms] {'MET' if ok else 'MISSED'}; peak RSS alerts "
          f"{d['alerts_rss'] / 2**20:.0f} MB, ingest {d['ingest_rss'] / 2**20:.0f} MB")
    if d["offered"] < 0.95 * 5000:
        print("    the publisher could not offer 5,000 msg/s here")


if __name__ == "__main__":
    raise SystemExit(main())
