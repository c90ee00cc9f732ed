"""How fast can this machine publish to a local Mosquitto? (issue #4, part 4)

    python bench/bench_publisher.py [--seconds 10] [--processes 2] [--qos 0]

Starts its own Mosquitto on a free loopback port and a bare subscriber (a separate process
counting messages), runs the simulator's load publisher flat out, and prints msg/s published
and received. Publisher, broker and subscriber share the machine's cores, so on a small box the
result is a lower bound of what the broker could take from a faster publisher.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt

from core import procs
from core.settings import load_settings
from simulators.load import measure

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subscriber(port: int, ready: Any, stop: Any, out: Any) -> None:
    """Count everything on sc/# (QoS 0 subscription: cheapest for the counter)."""
    n = [0]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    c.on_connect = lambda cl, *a: cl.subscribe("sc/#", qos=0)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda *a: n.__setitem__(0, n[0] + 1)
    c.connect("127.0.0.1", port)
    while not stop.is_set():
        c.loop(0.05)
    quiet_since, seen = time.monotonic(), n[0]
    while time.monotonic() - quiet_since < 1.0:  # drain what the broker still holds for us
        c.loop(0.05)
        if n[0] != seen:
            quiet_since, seen = time.monotonic(), n[0]
    out.put({"received": n[0]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument("--rate", type=float, default=float("inf"), help="target msg/s (default: flat out)")
    ap.add_argument("--no-subscriber", action="store_true")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n")
        broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=procs.preexec())
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            ctx = mp.get_context("fork")
            ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
            sub = None
            if not args.no_subscriber:
                sub = procs.process(ctx, subscriber, (port, ready, stop, out), daemon=True)
                sub.start()
                ready.wait(10)
            settings = load_settings({}, mqtt_url=f"mqtt://127.0.0.1:{port}")
            res = measure(settings, args.rate, args.processes, args.seconds, args.qos)
            print(f"published: {res['rate']:,.0f} msg/s ({res['acked']:,} in {res['seconds']:.1f} s, "
                  f"QoS {args.qos}, {args.processes} publisher processes)")
            if sub is not None:
                stop.set()
                got = out.get(timeout=30)
                sub.join(5)
                print(f"received:  {got['received']:,} of {res['acked']:,} by one bare paho subscriber "
                      f"({got['received'] / res['seconds']:,.0f} msg/s over the publishing time)")
        finally:
            broker.terminate()
            broker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
