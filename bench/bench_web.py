"""The dashboard's HTTP server under idle and slow connections, and the cost of a sign-in (issue #12).

    python bench/bench_web.py [--idle 1000] [--slow 200] [--rounds 30]

Starts `smartcommunity dashboard` on a free port (its own data dir, no MQTT/InfluxDB needed), then
times /api/health and a signed-in page with no other connections, and again with `--idle` silent
and `--slow` slowloris connections held open. Prints medians, their ratio, one sign-in (scrypt) and
the load average; the ceiling is an interactive answer: median under 250 ms with the connections open.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

CEILING_S = 0.25
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.cli import raise_fd_limit  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    raise_fd_limit(args.idle + args.slow + 512)
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    env.update(SC_DATA_DIR=str(tmp), SC_HTTP_PORT=str(port), SC_MQTT_URL="mqtt://127.0.0.1:9",
               SC_INFLUX_URL="http://127.0.0.1:9", SC_AUTO_INSTALL="0")
    run = [sys.executable, "-m", "smartcommunity"]
    subprocess.run([*run, "users", "add", "bench", "--name", "压测"], input="bench password\n", text=True,
                   env=env, cwd=ROOT, check=True, capture_output=True)
    proc = subprocess.Popen([*run, "dashboard", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(300):
            try:
                requests.get(url + "/api/health", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        s = requests.Session()
        csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(url + "/login").text).group(1)  # type: ignore[union-attr]
        t0 = time.perf_counter()
        r = s.post(url + "/login", data={"username": "bench", "password": "bench password", "csrf": csrf},
                   headers={"Origin": url}, allow_redirects=False)
        signin = time.perf_counter() - t0
        assert r.status_code == 302, r.status_code

        def user() -> None:
            assert requests.get(url + "/api/health", timeout=10).status_code in (200, 503)
            assert s.get(url + "/", timeout=10, allow_redirects=False).status_code == 200

        quiet = timed(user, args.rounds)
        for i in range(args.idle + args.slow):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i >= args.idle:
                c.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(c)

        def trickle() -> None:
            while not stop.wait(1.0):
                for c in socks[args.idle:]:
                    with contextlib.suppress(OSError):
                        c.sendall(b"X")

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(2)
        loaded = timed(user, args.rounds)
        ratio = loaded / quiet
        la = os.getloadavg()
        print(f"sign-in (scrypt N=2^15 r=8 p=3) {signin * 1000:.0f} ms")
        print(f"health + signed-in page, median of {args.rounds}: {quiet * 1000:.1f} ms quiet, "
              f"{loaded * 1000:.1f} ms with {args.idle} idle + {args.slow} slowloris connections open "
              f"(ratio {ratio:.2f}; ceiling {CEILING_S * 1000:.0f} ms) {'OK' if loaded <= CEILING_S else 'MISS'}")
        print(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores")
        return 0 if loaded <= CEILING_S else 1
    finally:
        stop.set()
        for c in socks:
            c.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
