"""Load mode: a fixed total publish rate of pre-built telemetry from several processes.

Why separate from the realistic simulator: the ingest benchmark needs tens of thousands of
messages per second; here nothing is computed per message but `bytes % (ts, seq)`, and each
process drives its own paho client without a network thread (publish writes straight to the
socket; `loop(0)` collects PUBACKs), which is the cheapest way to push paho.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from core import procs
from core.contract import Device, device_topic
from core.mqtt import make_client
from core.settings import Settings
from simulators.model import baseline, make_profile

SHORTFALL = 0.95  # below this share of the target, say the publisher is the bottleneck


def templates(devices: Sequence[Device], now_ms: int) -> list[tuple[str, bytes]]:
    """(topic, payload template with %d for ts and seq) per device, from a baseline reading."""
    import orjson

    out = []
    for d in devices:
        m = orjson.dumps(baseline(make_profile(d, 0), now_ms, 0))
        tpl = b'{"ts":%d,"seq":%d,"m":' + m.replace(b"%", b"%%") + b"}"
        out.append((device_topic(d.community, d.kind, d.device_id, "telemetry"), tpl))
    return out


def worker(settings: Settings, items: list[tuple[str, bytes]], rate: float, duration_s: float, qos: int,
           max_inflight: int, out: Any, stop: Any = None) -> None:
    """Publish `items` round robin at `rate` msg/s (inf: as fast as possible) for `duration_s` or until `stop`.

    SIGTERM (from the parent's stop, or the kernel when the parent died) and SIGINT end the run
    early but cleanly: the PUBACKs are collected and the counts reported.
    """
    stopping = [False]
    procs.on_stop(lambda: stopping.__setitem__(0, True))
    client = make_client(settings, client_id=f"sc-load-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(max_inflight)
    acked = [0]
    client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    url = settings.mqtt
    client.connect(url.host, url.port, keepalive=60)
    while not client.is_connected():
        client.loop(0.1)
    n = len(items)
    chunk = max(1, min(n, 500))  # one device at most once per chunk: distinct (device, ts)
    sent = seq = i = 0
    publish = client.publish
    t0 = time.monotonic()
    end = t0 + duration_s
    while True:
        now = time.monotonic()
        if now >= end or stopping[0] or (stop is not None and stop.is_set()):
            break
        due = chunk if rate == float("inf") else min(chunk, int((now - t0) * rate) - sent)
        if qos:  # paho scans all unacked messages on every PUBACK: keep that set small
            due = min(due, max_inflight - (sent - acked[0]))
        if due <= 0:
            client.loop(0.001)
            continue
        ts = int(time.time() * 1000)
        for _ in range(due):
            topic, tpl = items[i]
            publish(topic, tpl % (ts, seq), qos)
            i += 1
            if i == n:
                i, seq = 0, seq + 1
        sent += due
        client.loop(0)
    pub_s = time.monotonic() - t0
    deadline = time.monotonic() + 10
    while (client.want_write() or (qos and acked[0] < sent)) and time.monotonic() < deadline:
        client.loop(0.01)
    client.disconnect()
    out.put({"sent": sent, "acked": acked[0] if qos else sent, "seconds": pub_s})


def run_load(settings: Settings, rate: float, processes: int = 2, duration_s: float = 10.0, qos: int = 0,
             devices_from: str | None = None, communities: Sequence[str] = (), kinds: Sequence[str] = (),
             max_inflight: int = 200, registry: Mapping[str, Device] | None = None, quiet: bool = False) -> int:
    """Run the load; prints the achieved rate. Returns 0 if it met 95 % of the target, else 1.

    SIGTERM or SIGINT stops the publisher processes early; the summary is still printed.
    """
    res = measure(settings, rate, processes, duration_s, qos, devices_from, communities, kinds,
                  max_inflight, registry, stop_on_signal=True)
    if not quiet:
        print(res["summary"])
    return 0 if res["met"] else 1


def measure(settings: Settings, rate: float, processes: int = 2, duration_s: float = 10.0, qos: int = 0,
            devices_from: str | None = None, communities: Sequence[str] = (), kinds: Sequence[str] = (),
            max_inflight: int = 200, registry: Mapping[str, Device] | None = None,
            stop_on_signal: bool = False) -> dict[str, Any]:
    if registry is None:
        if devices_from:
            from core.registry import load_registry

            registry = load_registry(Path(devices_from))
        else:
            from core.registry import system_registry

            registry = system_registry(settings)
    devs = [d for d in registry.values()
            if (not communities or d.community in communities) and (not kinds or d.kind in kinds)]
    if not devs:
        raise ValueError("no devices to publish for")
    items = templates(sorted(devs, key=lambda d: d.device_id), int(time.time() * 1000))
    processes = max(1, min(processes, len(items)))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    stop = ctx.Event()
    per = rate / processes
    workers = [procs.process(ctx, worker, (settings, items[p::processes], per, duration_s, qos, max_inflight, q,
                                           stop), daemon=True) for p in range(processes)]
    restore = procs.on_stop(stop.set) if stop_on_signal else None
    try:
        for p in workers:
            p.start()
        results = [q.get(timeout=duration_s + 60) for _ in workers]
        for p in workers:
            p.join(10)
    finally:
        if restore:
            restore()
        for p in workers:
            if p.is_alive():
                p.terminate()
    sent = sum(r["sent"] for r in results)
    acked = sum(r["acked"] for r in results)
    secs = max(r["seconds"] for r in results)
    achieved = acked / secs if secs else 0.0
    met = rate == float("inf") or achieved >= SHORTFALL * rate
    target = "max" if rate == float("inf") else f"{rate:,.0f}"
    summary = (f"load: {acked:,} msgs (QoS {qos}) over {len(items):,} device topics from {processes} "
               f"processes in {secs:.1f} s = {achieved:,.0f} msg/s (target {target} msg/s)")
    if stop.is_set():
        summary += " (stopped early)"
    if not met:
        summary += ("\nload: SHORT of the target: the publisher (this machine's CPU for paho), not the "
                    "system under test, is the bottleneck; use more cores/processes or another host")
    return {"sent": sent, "acked": acked, "seconds": secs, "rate": achieved, "met": met, "summary": summary}
