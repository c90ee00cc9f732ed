"""What the drill's observers do, each run inside a host of the drill (`ip netns exec … python -m
tests.drill_watch …`), writing what they see as JSON lines for the test to read:

- `edge OUT`: on the edge host, every telemetry message the devices gave their edge broker — what
  must reach the time series (device, ts), and when a gas reading first crossed a level.
- `staff OUT PORT BROKER…`: on the staff's host, every message on `sc/alerts/#` of each center's
  broker (and the edge bridges' state there), and an HTTP receiver standing in for the SMS/voice
  gateway (every notification posted).
- `points SINCE_MS`: on a center, the (device, ts) of every point its InfluxDB holds since then,
  printed as one JSON list.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt

from core.contract import ALERT_TOPIC_ROOT, KINDS, TOPIC_ROOT
from core.validation import parse_json, parse_topic, parse_ts
from security.broker import EDGE_STATE_ROOT


class Lines:
    """An append-only JSON-lines file, flushed at once (the test reads it while it grows)."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()

    def write(self, **row: Any) -> None:
        with self._lock:
            self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._f.flush()


def subscribe(host: str, port: int, topics: list[str], on: Any, cid: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    c.on_connect = lambda cl, *_: cl.subscribe([(t, 1) for t in topics])
    c.on_message = lambda _c, _u, m: on(m)
    c.reconnect_delay_set(0.2, 1)
    c.connect_async(host, port, keepalive=5)
    c.loop_start()
    return c


def edge(out: str) -> None:
    lines = Lines(out)

    def on(m: mqtt.MQTTMessage) -> None:
        try:
            t = parse_topic(m.topic)
            if t.msg_type != "telemetry":
                return
            doc = parse_json(m.payload)
            assert isinstance(doc, dict)
            lel = (doc.get("m") or {}).get("lel_pct")
            lines.write(at=time.time(), device=t.device_id, ts=parse_ts(doc.get("ts")), lel=lel)
        except Exception as exc:  # a device's garbage is ingest's to dead-letter; counted here as seen
            lines.write(at=time.time(), bad=str(exc)[:200])

    subscribe("127.0.0.1", 1883, [f"{TOPIC_ROOT}/+/+/+/telemetry"], on, "drill-edge-watch")
    threading.Event().wait()


def staff(out: str, port: int, brokers: list[str]) -> None:
    lines = Lines(out)
    for b in brokers:
        host, _, p = b.rpartition(":")

        def on(m: mqtt.MQTTMessage, b: str = b) -> None:
            try:
                doc = json.loads(m.payload) if m.payload else None
            except ValueError:
                doc = None
            lines.write(at=time.time(), broker=b, topic=m.topic, retained=bool(m.retain), alert=doc)

        subscribe(host, int(p), [f"{ALERT_TOPIC_ROOT}/#", f"{EDGE_STATE_ROOT}/#"], on, f"drill-staff-{host}")

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                doc = json.loads(body)
            except ValueError:
                doc = {"raw": body.decode(errors="replace")}
            msg = doc.get("message") or {}
            lines.write(at=time.time(), notified=doc.get("alert_id"), event=msg.get("event"),
                        to=sorted(str(p.get("name") or p) for p in doc.get("to") or []), peer=self.client_address[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *_: Any) -> None:
            pass

    ThreadingHTTPServer(("0.0.0.0", port), Gateway).serve_forever()


def points(since_ms: int) -> None:
    from core.influx import InfluxClient
    from core.settings import load_settings

    s = load_settings()
    influx = InfluxClient(s.influx_url, s.influx_db)
    got: list[tuple[str, int]] = []
    for kind in KINDS:
        for series in influx.query(f'SELECT * FROM "{kind}" WHERE time >= {since_ms}ms'):
            cols = series.columns
            ti, di = cols.index("time"), cols.index("device_id")
            got += [(row[di], int(row[ti])) for row in series.values]
    print(json.dumps(got))


if __name__ == "__main__":
    verb, *rest = sys.argv[1:]
    if verb == "edge":
        edge(rest[0])
    elif verb == "staff":
        staff(rest[0], int(rest[1]), rest[2:])
    elif verb == "points":
        points(int(rest[0]))
    else:
        raise SystemExit(f"unknown verb {verb!r}")
