"""Notification latency: from the moment an alert is handed to notification (composed, appended
to the outbox, fsync'd) to its arrival at a local receiver, per channel. Goal: p99 < 1 s, with all
channels healthy and with one channel dead.

    python bench/bench_notify.py [--n 200] [--gap-ms 20]

Receivers are the tests' real local servers (WeCom and DingTalk robots that verify as the real ones
do, a generic webhook, the SMS gateway webhook, aiosmtpd with STARTTLS), in a process of their own.
The robots' rate limits are lifted here (rate: count 0), since past them the digest is the designed
behaviour, not latency; 20 ms apart is a storm far beyond any robot's 20 a minute. The "dead"
channel is a webhook that accepts the connection and never answers (each attempt waits out
SC_NOTIFY_TIMEOUT_S = 5 s), the worst kind. Reference ceiling measured in the same run: a bare
`requests.post` round trip to the same webhook receiver.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from alerts.channels.base import Target
from alerts.delivery import Delivery, RetryPolicy, outbox_path
from alerts.message import Places, warm_up
from alerts.notify import Notifier
from alerts.roster import Person
from alerts.store import AlertStore
from core.registry import bundled_registry_path, load_registry
from tests.alerts.channels.conftest import sample_alert
from tests.alerts.channels.receivers import DingTalkRobot, Webhook, WeComRobot, smtp_server

PERSON = Person(name="张三", pid="z", phone="13800000001", wecom="13800000001", dingtalk="13800000001",
                email="zhang@example.cn")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def receivers(conn, tmp: str, dead: bool) -> None:  # type: ignore[no-untyped-def]
    """The far ends, in their own process (as they would be): ports out, then (channel, alert id, arrival)."""
    wecom, ding, hook, sms = WeComRobot(rate=10**6), DingTalkRobot(rate=10**6), Webhook(), Webhook()
    mail_gen = smtp_server(Path(tmp), starttls=True)
    mail = next(mail_gen)
    hung = Webhook("hang") if dead else None
    conn.send({"wecom": wecom.robot_url, "dingtalk": ding.robot_url, "secret": ding.secret, "webhook": hook.url,
               "sms": sms.url, "email": f"smtp://127.0.0.1:{mail.port}", "dead": hung.url if hung else None})
    conn.recv()  # "stop"
    out: list[tuple[str, str, float]] = []
    for r in wecom.received:
        if r.body["msgtype"] == "markdown":
            out.append(("wecom", r.body["markdown"]["content"].split("/alerts/")[1].split(")")[0], r.at))
    for r in ding.received:
        out.append(("dingtalk", r.body["markdown"]["text"].split("/alerts/")[1].split(")")[0], r.at))
    for name, h in (("webhook", hook), ("sms", sms)):
        out += [(name, r.body["alert_id"], r.at) for r in h.received]
    out += [("email", m.message.get_content().split("/alerts/")[1].split()[0], m.at) for m in mail.mails]
    conn.send(out)
    for x in (wecom, ding, hook, sms, *([hung] if hung else [])):
        x.close()
    mail_gen.close()


def run(n: int, gap_s: float, dead: bool, tmp: Path) -> dict[str, list[float]]:
    data = tmp / ("dead" if dead else "healthy")
    here, there = mp.Pipe()
    proc = mp.Process(target=receivers, args=(there, str(tmp), dead), daemon=True)
    proc.start()
    urls = here.recv()
    targets = [
        Target("wecom", "wecom", urls["wecom"], rate_count=0),
        Target("dingtalk", "dingtalk", urls["dingtalk"], secret=urls["secret"], rate_count=0),
        Target("webhook", "webhook", urls["webhook"]),
        Target("sms", "sms", urls["sms"]),
        Target("email", "email", urls["email"], options={"verify_tls": False}),
    ]
    if urls["dead"]:
        targets.insert(0, Target("dead", "webhook", urls["dead"]))
    store = AlertStore(data / "alerts" / "alerts.sqlite")
    d = Delivery(data, targets, policy=RetryPolicy(1.0, 120.0, 3600.0), timeout_s=5.0,
                 record_many=lambda steps: store.record_many([(a, e, at, "system", None, x) for a, e, at, x in steps]))
    notifier = Notifier(outbox_path(data), Places(load_registry(bundled_registry_path()).get), "http://dash:8050")
    d.start()
    sent: dict[str, float] = {}
    try:
        for i in range(n):
            a = sample_alert(alert_id=f"a-{i:05d}")
            sent[a.alert_id] = time.time()
            notifier.notify(a, "raised", 1, [PERSON])
            time.sleep(gap_s)
        deadline = time.monotonic() + 60
        live = [w for tid, w in d.workers.items() if tid != "dead"]
        while time.monotonic() < deadline and sum(w.delivered for w in live) < n * len(live):
            time.sleep(0.1)
    finally:
        d.stop(join_s=0.2)
    here.send("stop")
    got = here.recv()
    proc.join(10)
    store.close()
    lat: dict[str, list[float]] = {}
    for ch, aid, at in got:
        lat.setdefault(ch, []).append(at - sent[aid])
    missing = {k: n - len(v) for k, v in lat.items() if len(v) != n}
    if missing:
        print(f"  NOT ALL DELIVERED within 60 s: {missing}")
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=20.0)
    args = ap.parse_args()
    warm_up()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ref = Webhook()
        s = requests.Session()
        rtt = []
        for _ in range(200):
            t0 = time.perf_counter()
            s.post(ref.url, json={"alert_id": "x"}, timeout=5)
            rtt.append(time.perf_counter() - t0)
        ref.close()
        print(f"reference: bare requests.post round trip to the local webhook: p50 {pct(rtt, .5)*1000:.1f} ms, "
              f"p99 {pct(rtt, .99)*1000:.1f} ms")
        worst = 0.0
        for dead in (False, True):
            lat = run(args.n, args.gap_ms / 1000, dead, tmp)
            label = "one channel dead (hangs, 5 s timeout)" if dead else "all channels healthy"
            print(f"{label}: {args.n} notifications, {args.gap_ms:g} ms apart; alert -> receiver latency")
            allv: list[float] = []
            for ch, v in lat.items():
                allv += v
                print(f"  {ch:9s} n={len(v):4d} p50 {pct(v, .5)*1000:7.1f} ms  p99 {pct(v, .99)*1000:7.1f} ms  "
                      f"max {max(v)*1000:7.1f} ms")
            p99 = pct(allv, .99)
            worst = max(worst, p99)
            print(f"  all       p50 {pct(allv, .5)*1000:7.1f} ms  p99 {p99*1000:7.1f} ms  "
                  f"mean {statistics.fmean(allv)*1000:.1f} ms  (goal p99 < 1000 ms: "
                  f"{'met' if p99 < 1.0 else 'MISSED'})")
    la = os.getloadavg()
    print(f"load average: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} ({os.cpu_count()} cores)")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
