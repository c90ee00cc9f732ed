"""Benchmark of an uplink cut between the communities' edge brokers and the center:
`python bench/bench_edge.py [--up 20] [--cut 60]`.

One edge broker per community (smartcommunity/edge.py), each bridged into one center broker, each
fed at its community's street rate: the bundled registry's devices, one message per device per
`interval_s` (QoS 1, one connection per community). A persistent QoS 1 subscriber on the center
stands in for ingest. After `--up` seconds the center is killed (after a save, as a crash after its
autosave) for `--cut` seconds while the devices keep publishing to their edges, then restarted on
the same persistence. Printed: the rate the center received at while the uplink was up, how long
after the center came back the backlog began to arrive and was all in, the drain rate as a ratio of
the uplink-up rate, loss and duplicates, and the load average (the 2-core machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import paho.mqtt.client as mqtt

    from core.contract import COMMUNITIES
    from core.registry import ensure_registry, load_registry
    from core.settings import load_settings
    from smartcommunity.edge import EdgeSpec, edge_state_topic, start_edge
    from smartcommunity.services import free_port, start_mosquitto

    ap = argparse.ArgumentParser()
    ap.add_argument("--up", type=float, default=20.0, help="seconds with the uplink up, first")
    ap.add_argument("--cut", type=float, default=60.0, help="seconds the uplink is cut")
    ap.add_argument("--after", type=float, default=30.0, help="longest wait for the backlog once it is back")
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
        cs = load_settings(env, data_dir=f"{tmp}/center", mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
        registry = load_registry(ensure_registry(cs))
        rates: dict[str, float] = defaultdict(float)
        for dev in registry.values():
            rates[dev.community] += 1.0 / dev.interval_s
        center = start_mosquitto(cs)
        edges = {c: start_edge(cs, EdgeSpec(c, [(cs.mqtt.host, cs.mqtt.port)], port=free_port()), Path(tmp, "edge", c))
                 for c in sorted(COMMUNITIES)}

        first_seen: dict[tuple[str, int], float] = {}
        received = [0]
        states: dict[str, bytes] = {}
        lock = threading.Lock()

        def on_message(c, u, msg):  # type: ignore[no-untyped-def]
            now = time.monotonic()
            if msg.topic in state_topics:
                states[state_topics[msg.topic]] = bytes(msg.payload)
                return
            d = json.loads(msg.payload)
            with lock:
                received[0] += 1
                first_seen.setdefault((d["c"], d["seq"]), now)

        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-center-{uuid.uuid4().hex[:6]}",
                          clean_session=False)
        state_topics = {edge_state_topic(c): c for c in COMMUNITIES}
        sub.on_connect = lambda c, *a: c.subscribe([("sc/#", 1), *((t, 1) for t in state_topics)])
        sub.on_message = on_message
        sub.reconnect_delay_set(0.2, 1)
        sub.connect_async(cs.mqtt.host, cs.mqtt.port)
        sub.loop_start()
        deadline = time.monotonic() + 30
        while not all(states.get(c) == b"1" for c in edges) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(states.get(c) == b"1" for c in edges), f"bridges not up: {states}"

        sent: dict[str, list[float]] = {c: [] for c in edges}  # publish time of each seq
        stop = threading.Event()

        def feed(community: str, port: int) -> None:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{community}-{uuid.uuid4().hex[:6]}")
            pub.max_inflight_messages_set(1000)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            topic = f"sc/{community}/gas/BENCH-{community}/telemetry"
            t0, k = time.monotonic(), 0
            while not stop.is_set():
                due = t0 + k / rates[community]
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                body = json.dumps({"ts": int(time.time() * 1000), "seq": k, "c": community, "m": {"lel_pct": 1.0}})
                pub.publish(topic, body, qos=1)
                sent[community].append(time.monotonic())
                k += 1
            pub.loop_stop()
            pub.disconnect()

        feeders = [threading.Thread(target=feed, args=(c, e.url.port), daemon=True) for c, e in edges.items()]
        t_start = time.monotonic()
        for f in feeders:
            f.start()
        time.sleep(args.up)
        up_s = time.monotonic() - t_start
        with lock:
            up_rate = received[0] / up_s

        db = cs.data_path / "mosquitto" / "data" / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else 0
        os.kill(center.proc.pid, signal.SIGUSR1)
        while not (db.exists() and db.stat().st_mtime_ns != before):
            time.sleep(0.05)
        center.proc.kill()
        center.proc.wait()
        t_cut = time.monotonic()
        time.sleep(args.cut)
        center = start_mosquitto(cs)
        t_back = time.monotonic()
        backlog = {(c, k) for c, times in sent.items() for k, t in enumerate(list(times)) if t_cut <= t < t_back}

        def backlog_in() -> bool:
            with lock:
                return all(key in first_seen for key in backlog)

        deadline = t_back + args.after
        while not backlog_in() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for f in feeders:
            f.join(10)
        time.sleep(2.0)  # the last live messages reach the center
        sub.loop_stop()
        sub.disconnect()
        for e in edges.values():
            e.stop()
        center.stop()

    total_sent = sum(len(t) for t in sent.values())
    lost = sum(1 for c, times in sent.items() for k in range(len(times)) if (c, k) not in first_seen)
    backlog_times = sorted(first_seen[k] for k in backlog if k in first_seen)
    street = sum(rates.values())
    print(f"street rate {street:.1f} msg/s ({len(registry)} devices, 4 edges, QoS 1); uplink up {up_s:.0f} s: "
          f"center received {up_rate:.1f} msg/s")
    ratios = []
    for c in sorted(sent):
        mine = sorted(first_seen[k] for k in backlog if k[0] == c and k in first_seen)
        if not mine:
            continue
        n_c = sum(1 for k in backlog if k[0] == c)
        drain_rate = len(mine) / max(mine[-1] - mine[0], 1e-3)
        ratios.append(drain_rate / rates[c])
        print(f"  edge {c}: backlog {n_c:,}; its bridge back {mine[0] - t_back:.2f} s after the center, drained in "
              f"{mine[-1] - mine[0]:.2f} s: {drain_rate:,.0f} msg/s = {drain_rate / rates[c]:.1f} x its uplink-up rate "
              f"({rates[c]:.1f} msg/s)")
    if backlog_times:
        drain_s = backlog_times[-1] - t_back
        print(f"uplink cut {t_back - t_cut:.1f} s, backlog {len(backlog):,} messages: all of it at the center "
              f"{drain_s:.2f} s after the center came back (reconnect backoff included; cut/catch-up "
              f"{(t_back - t_cut) / drain_s:.1f}); drain rate vs uplink-up rate, slowest edge: {min(ratios):.1f} x")
    print(f"sent {total_sent:,}, lost {lost} (backlog not in: {len(backlog) - len(backlog_times)}), "
          f"duplicates {received[0] - len(first_seen)}")
    print(f"load average {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    return 0 if lost == 0 and backlog_times else 1


if __name__ == "__main__":
    sys.exit(main())
