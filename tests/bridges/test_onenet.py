"""The OneNET bridge against the real broker (and, for duplicates, real ingest → InfluxDB), pushed
to over real HTTP with bodies signed and encrypted here from OneNET's documented format, written
independently of bridges/onenet.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import requests
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bridges.cli import credentials
from bridges.onenet import NAME, ConfigError, StreamMap, decrypt, load_map, members_raw
from core import heartbeat
from core.contract import Device
from core.influx import InfluxClient
from core.mqtt import make_client
from core.settings import Settings
from ingest.deadletter import DeadLetterStore, store_path
from ingest.service import Ingestor
from smartcommunity.services import free_port
from tests.bridges.conftest import ONENET_DEV, TOKEN, Running
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


# ---- the platform's side, from its documentation ------------------------------------------------

def sign(token: str, nonce: str, msg: str) -> str:
    return base64.b64encode(hashlib.md5(f"{token}{nonce}{msg}".encode()).digest()).decode()


def plain_body(msg: Any, token: str = TOKEN, nonce: str = "abcdefgh", indent: int | None = None) -> bytes:
    """A plain-mode push: msg inside the body as JSON, signed over its text as sent."""
    text = json.dumps(msg, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
    sig = sign(token, nonce, text)
    return f'{{"msg": {text}, "nonce": "{nonce}", "msg_signature": "{sig}"}}'.encode()


def new_aeskey() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")  # 43 characters, as the platform shows


def encrypt(msg: bytes, aeskey: str) -> str:
    key = base64.b64decode(aeskey + "=")
    plain = os.urandom(16) + len(msg).to_bytes(4, "big") + msg + b"onenet-push-id"
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()).decode()


def enc_body(msg: Any, aeskey: str, token: str = TOKEN, nonce: str = "q1w2e3r4", raw: bytes | None = None) -> bytes:
    e = encrypt(raw if raw is not None else json.dumps(msg).encode(), aeskey)
    return json.dumps({"enc_msg": e, "nonce": nonce, "msg_signature": sign(token, nonce, e)}).encode()


def point(ds_id: str, value: Any, at: int, dev_id: str = ONENET_DEV) -> dict[str, Any]:
    return {"type": 1, "dev_id": int(dev_id) if dev_id.isdigit() else dev_id, "ds_id": ds_id, "at": at,
            "value": value}


def now_ms() -> int:
    return int(time.time() * 1000)


def letters(settings: Settings) -> list[dict[str, Any]]:
    store = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max)
    try:
        return store.list()
    finally:
        store.close()


# ---- URL check ----------------------------------------------------------------------------------

def test_url_check_answers_msg_only_when_signed(run_bridge: Callable[..., Running]) -> None:
    r = run_bridge()
    msg, nonce = "xk2Jd9Ls", "Ab3dEf7h"
    ok = requests.get(r.url, params={"msg": msg, "nonce": nonce, "signature": sign(TOKEN, nonce, msg)}, timeout=10)
    assert ok.status_code == 200 and ok.text == msg  # the bare msg, nothing around it

    bad = requests.get(r.url, params={"msg": msg, "nonce": nonce, "signature": sign("other", nonce, msg)},
                       timeout=10)
    assert bad.status_code == 403 and msg not in bad.text
    missing = requests.get(r.url, params={"msg": msg}, timeout=10)
    assert missing.status_code == 400
    assert r.bridge.counters["url_checks"] == 1 and r.bridge.counters["refused_url_check"] == 2


def test_url_check_takes_a_plus_that_arrived_as_a_space(run_bridge: Callable[..., Running]) -> None:
    r = run_bridge()
    msg = next(m for m in (f"m{i}" for i in range(1000)) if "+" in sign(TOKEN, "n0nce123", m))
    sig = sign(TOKEN, "n0nce123", msg).replace("+", " ")  # an unencoded '+' in a query is a space
    got = requests.get(f"{r.url}?msg={msg}&nonce=n0nce123&signature={sig}", timeout=10)
    assert got.status_code == 200 and got.text == msg


# ---- data ---------------------------------------------------------------------------------------

def test_data_points_become_the_devices_telemetry(run_bridge: Callable[..., Running], collector: Any,
                                                  mapping: StreamMap, gas: Device) -> None:
    r = run_bridge(mapping)
    topic = f"sc/{gas.community}/gas/{gas.device_id}/telemetry"
    col = collector(topic)
    at = now_ms() - 5000
    # Two streams of one device at one instant (one message), and a later one; the body is
    # indented: the signature covers msg exactly as sent.
    msg = [point("CH4", "12.5", at), point("CO", 40, at), point("CH4", 13, at + 1000)]
    resp = r.post(plain_body(msg, indent=2))
    assert resp.status_code == 200, resp.text
    assert col.wait_for(lambda m: len(m) >= 2)
    time.sleep(0.3)
    got = sorted((orjson.loads(p) for t, p, _ in col.messages), key=lambda d: d["ts"])
    assert [t for t, _, _ in col.messages] == [topic, topic]
    assert got == [{"ts": at, "seq": at, "m": {"lel_pct": 12.5, "co_ppm": 40.0}},
                   {"ts": at + 1000, "seq": at + 1000, "m": {"lel_pct": 13.0}}]
    assert letters(r.bridge.settings) == []


def test_a_single_object_msg_and_unmapped_names_taken_as_they_are(run_bridge: Callable[..., Running], collector: Any,
                                                                  gas: Device) -> None:
    # No map: dev_id is the registered device_id, ds_id the metric. The client is injected: an
    # MQTT 3.1.1 one with a fixed id, as a broker account of a deployment might require.
    cid = f"sc-onenet-{now_ms() % 10**6}"
    r = run_bridge(client_factory=lambda s: make_client(s, client_id=cid, protocol=mqtt.MQTTv311))
    assert r.bridge.client._client_id.decode() == cid
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    at = now_ms()
    assert r.post(plain_body(point("valve_open", 1, at, dev_id=gas.device_id))).status_code == 200
    assert col.wait_for(lambda m: len(m) == 1)
    assert col.json() == [{"ts": at, "seq": at, "m": {"valve_open": True}}]


def test_online_and_offline_become_retained_status(run_bridge: Callable[..., Running], collector: Any,
                                                   mapping: StreamMap, gas: Device) -> None:
    r = run_bridge(mapping)
    topic = f"sc/{gas.community}/gas/{gas.device_id}/status"
    col = collector(topic)
    at = now_ms()
    for status, t in ((1, at), (0, at + 2000)):
        body = plain_body({"type": 2, "dev_id": int(ONENET_DEV), "status": status, "login_type": 7, "at": t})
        assert r.post(body).status_code == 200
    assert col.wait_for(lambda m: len(m) >= 2)
    assert col.json()[-2:] == [{"ts": at, "state": "online"}, {"ts": at + 2000, "state": "offline"}]
    # A late "online" (older than the offline) is passed on for the record, but not retained.
    body = plain_body({"type": 2, "dev_id": int(ONENET_DEV), "status": 1, "login_type": 7, "at": at + 1000})
    assert r.post(body).status_code == 200
    assert col.wait_for(lambda m: len(m) >= 3)
    late = collector(topic)  # a new subscriber gets the newest state, retained
    assert late.wait_for(lambda m: len(m) == 1)
    time.sleep(0.3)
    assert late.messages[0][2] is True and late.json() == [{"ts": at + 2000, "state": "offline"}]


def test_wrong_signature_is_refused_counted_and_nothing_passes(run_bridge: Callable[..., Running], collector: Any,
                                                               mapping: StreamMap, gas: Device,
                                                               settings: Settings,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    r = run_bridge(mapping)
    col = collector(f"sc/{gas.community}/gas/#")
    at = now_ms()
    forged = plain_body([point("CH4", 80, at)], token="not-the-token")
    assert r.post(forged).status_code == 403
    # A signature of a different msg: the body was altered on the way.
    good = plain_body([point("CH4", 5, at)])
    tampered = good.replace(b'"value":5', b'"value":90')
    assert tampered != good and r.post(tampered).status_code == 403
    assert r.post(b'{"msg": {"type": 1}, "nonce": "abcdefgh"}').status_code == 400  # unsigned
    assert r.post(b"not json at all").status_code == 400
    assert r.bridge.counters["refused_signature"] == 2 and r.bridge.counters["refused_malformed"] == 2
    # Logged once, not once per forged request (all are counted).
    assert len([x for x in caplog.records if "wrong msg_signature" in x.getMessage()]) == 1
    time.sleep(1.0)
    fresh = [m for m in col.messages if not m[2]]  # retained copies are earlier tests' status
    assert fresh == [] and letters(settings) == []
    beat = wait_until(lambda: [h for h in heartbeat.read_all(settings.data_path, NAME)
                               if h["counters"].get("refused_signature") == 2], 5)
    assert beat and beat[0]["fresh"]


def test_encrypted_push_round_trip(run_bridge: Callable[..., Running], collector: Any, mapping: StreamMap,
                                   gas: Device, settings: Settings) -> None:
    aeskey = new_aeskey()
    r = run_bridge(mapping, aeskey=aeskey)
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    at = now_ms()
    assert r.post(enc_body([point("CH4", 27.5, at)], aeskey)).status_code == 200
    assert col.wait_for(lambda m: len(m) == 1)
    assert col.json() == [{"ts": at, "seq": at, "m": {"lel_pct": 27.5}}]

    # Signed by the token but under another AES key, and a plaintext that is not JSON: both kept.
    assert r.post(enc_body([point("CH4", 1, at + 1)], new_aeskey())).status_code == 200
    assert r.post(enc_body(None, aeskey, raw=b"{not json")).status_code == 200
    got = {d["reason"]: d for d in letters(settings)}
    assert set(got) == {"undecryptable", "bad_json"}
    assert got["bad_json"]["payload"] == "{not json" and got["bad_json"]["topic"] == "onenet"
    # An encrypted body with a wrong signature is refused like any other.
    forged = enc_body([point("CH4", 1, at)], aeskey, token="x")
    assert r.post(forged).status_code == 403 and r.bridge.counters["refused_signature"] == 1
    assert len(col.messages) == 1


def test_decrypt_refuses_what_is_not_the_format() -> None:
    aeskey = new_aeskey()
    key = base64.b64decode(aeskey + "=")
    assert decrypt(encrypt(b'{"a":1}', aeskey), key) == b'{"a":1}'
    for bad in ("%%%", base64.b64encode(b"short").decode(), encrypt(b"x", new_aeskey())):
        with pytest.raises(ValueError):
            decrypt(bad, key)
    # A length field pointing past the plaintext.
    plain = os.urandom(16) + (10_000).to_bytes(4, "big") + b"{}"
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    e = base64.b64encode(enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()).decode()
    with pytest.raises(ValueError, match="length"):
        decrypt(e, key)


def test_members_raw_gives_each_value_as_sent() -> None:
    text = '{ "msg" : [ {"a": 1} , 2 ],"nonce":"n", "x": {"y": "}"} }'
    assert members_raw(text) == {"msg": '[ {"a": 1} , 2 ]', "nonce": '"n"', "x": '{"y": "}"}'}
    for bad in ('[1]', '{"a" 1}', '{"a": 1 "b": 2}', '{1: 2}'):
        with pytest.raises(ValueError):
            members_raw(bad)


def test_what_cannot_be_mapped_is_dead_lettered_with_a_reason(run_bridge: Callable[..., Running], collector: Any,
                                                              mapping: StreamMap, gas: Device,
                                                              settings: Settings) -> None:
    r = run_bridge(mapping)
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    at = now_ms()
    msg = [
        point("CH4", 3.5, at),                         # fine
        point("CH4", 3.5, at, dev_id="999000111"),     # a device nobody mapped or registered
        point("humidity", 40, at),                     # a stream that is no metric of a gas detector
        point("CH4", "abc", at + 1),                   # not a number
        point("CH4", 250, at + 2),                     # outside 0..100 %LEL
        point("CH4", 3, 1_500_000_000_000),            # 2017: beyond the contract's 7 days
        point("CH4", 3, 10**30),                       # no time at all (and past 64 bits)
        point("CH4", 10**400, at + 3),                 # past any float
        point("CH4", "9" * 20_000, at + 4),            # one item over the contract's 16 KiB
        {"type": 7, "dev_id": int(ONENET_DEV), "cmd_id": "c1", "at": at},  # NB command result: not bridged
        {"type": 2, "dev_id": int(ONENET_DEV), "status": 5, "at": at},     # neither online nor offline
        "a string, not an object",
    ]
    assert r.post(plain_body(msg)).status_code == 200  # all taken care of: nothing for the platform to retry
    assert col.wait_for(lambda m: len(m) == 1)
    assert col.json() == [{"ts": at, "seq": at, "m": {"lel_pct": 3.5}}]

    # Through the contract's own verb, in a process of its own.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SC_")}, "SC_DATA_DIR": str(settings.data_path),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "smartcommunity", "deadletter", "list", "--json"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = json.loads(out)
    by_topic = sorted((d["topic"], d["reason"]) for d in rows)
    assert by_topic == sorted([
        ("onenet/999000111/CH4", "unknown_device"),
        (f"onenet/{ONENET_DEV}/humidity", "unknown_metric"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_value"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_value"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_timestamp"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_timestamp"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_value"),
        (f"onenet/{ONENET_DEV}/status", "bad_payload"),
        (f"onenet/{ONENET_DEV}/status", "bad_payload"),
        ("onenet", "bad_payload"),
        (f"onenet/{ONENET_DEV}/CH4", "bad_json"),
    ])
    unknown = next(d for d in rows if d["reason"] == "unknown_device")
    assert json.loads(unknown["payload"])["dev_id"] == 999000111  # the item as OneNET sent it
    assert all(d["received_at"] for d in rows)
    assert r.bridge.snapshot()["deadlettered_by_reason"]["bad_value"] == 3


def test_a_repeated_push_is_stored_once(run_bridge: Callable[..., Running], mapping: StreamMap, gas: Device,
                                        settings: Settings, influx: InfluxClient) -> None:
    ing = Ingestor(settings)
    ing.start()
    try:
        assert wait_until(lambda: ing.mqtt_ok, 10)
        time.sleep(0.3)  # subscription settles
        r = run_bridge(mapping)
        at = now_ms() - 60_000
        body = plain_body([point("CH4", 31.0, at)])
        # The platform retries a push whose 200 it did not see: the same body comes again.
        assert r.post(body).status_code == 200
        assert r.post(body).status_code == 200
        assert wait_until(lambda: ing.counters["stored"] >= 2, 15)
        rows = influx.rows(f"SELECT lel_pct FROM gas WHERE device_id = '{gas.device_id}'")
        assert len(rows) == 1 and rows[0]["lel_pct"] == 31.0
    finally:
        ing.close()


def test_a_repeated_push_raises_one_alert(run_bridge: Callable[..., Running], mapping: StreamMap, gas: Device,
                                          settings: Settings, collector: Any, start_ingest: Any) -> None:
    from alerts.service import AlertService

    start_ingest()  # judges what the bridge publishes and hands the engine what it accepts
    sub = collector("sc/alerts/#")
    svc = AlertService(settings)
    thread = threading.Thread(target=svc.run_forever, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: svc.mqtt_ok, 10)
        time.sleep(0.3)
        r = run_bridge(mapping)
        body = plain_body([point("CH4", 31.0, now_ms())])  # ≥ 25 %LEL: gas_lel_high, red

        def raised() -> set[str]:
            return {d["alert_id"] for _, p, retained in sub.messages if p and not retained
                    for d in [orjson.loads(p)] if d["rule"] == "gas_lel_high" and d["device_id"] == gas.device_id}

        assert r.post(body).status_code == 200
        assert wait_until(raised, 10)
        assert r.post(body).status_code == 200  # the platform's retry
        time.sleep(1.5)
        assert len(raised()) == 1
    finally:
        svc.stop()
        thread.join(10)


def test_body_over_the_limit_gets_413(run_bridge: Callable[..., Running], settings: Settings) -> None:
    r = run_bridge(max_body_bytes=4096)
    big = plain_body([point("CH4", 1, now_ms() + i) for i in range(70)])
    assert 4096 < len(big) < 8192
    assert r.post(big).status_code == 413
    # Chunked, with no Content-Length to go by.
    resp = requests.post(r.url, data=iter([big[:3000], big[3000:]]), timeout=20)
    assert resp.status_code == 413
    assert r.bridge.counters["refused_too_large"] == 2 and letters(settings) == []
    huge = plain_body([point("CH4", 1, now_ms() + i) for i in range(2000)])  # past waitress's own backstop
    assert r.post(huge).status_code == 413


def test_a_device_over_its_budget_is_rate_limited(run_bridge: Callable[..., Running], collector: Any,
                                                  mapping: StreamMap, gas: Device, settings: Settings) -> None:
    r = run_bridge(mapping, device_rate=1.0, device_burst=3)
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    at = now_ms()
    # Ten points 10 ms apart in the device's own time: far faster than 1 point/s.
    assert r.post(plain_body([point("CH4", 2, at + 10 * i) for i in range(10)])).status_code == 200
    assert col.wait_for(lambda m: len(m) >= 3)
    time.sleep(0.5)
    assert len(col.messages) == 3
    cut = [d for d in letters(settings) if d["reason"] == "rate_limited"]
    assert len(cut) == 7 and r.bridge.snapshot()["rate_limited_devices"] == {gas.device_id: 7}


def test_no_broker_answers_503_so_the_platform_retries(run_bridge: Callable[..., Running], mapping: StreamMap,
                                                       settings: Settings) -> None:
    away = replace(settings, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")  # nothing listens there
    r = run_bridge(mapping, settings=away, wait_s=0.5)
    resp = r.post(plain_body([point("CH4", 2, now_ms())]))
    assert resp.status_code == 503
    assert r.bridge.counters["unavailable"] == 1 and r.bridge.counters.get("published", 0) == 0


# ---- credentials and the command ----------------------------------------------------------------

def test_credentials_from_private_files_or_the_environment(tmp_path: Path, settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = Namespace(token=None, token_file=None, aes_key_file=None)
    monkeypatch.delenv("SC_SECRET_ONENET_TOKEN", raising=False)
    monkeypatch.delenv("SC_SECRET_ONENET_AESKEY", raising=False)
    with pytest.raises(ConfigError, match="no OneNET token"):
        credentials(args, settings)
    stored = settings.secrets_path / "onenet" / "token"  # the secrets folder, checked like a --token-file
    stored.parent.mkdir(parents=True)
    stored.write_text("from-store\n")
    stored.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        credentials(args, settings)
    stored.chmod(0o600)
    assert credentials(args, settings) == ("from-store", None)
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        credentials(Namespace(token=None, token_file=f, aes_key_file=None), settings)
    f.chmod(0o600)
    assert credentials(Namespace(token=None, token_file=f, aes_key_file=None), settings) == (TOKEN, None)
    monkeypatch.setenv("SC_SECRET_ONENET_TOKEN", "from-env")
    monkeypatch.setenv("SC_SECRET_ONENET_AESKEY", "k" * 43)
    assert credentials(args, settings) == ("from-env", "k" * 43)


def test_map_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"devices": {"1": "G-1"}, "streams": {"CH4": "lel_pct"}}))
    assert load_map(good) == StreamMap({"1": "G-1"}, {"CH4": "lel_pct"})
    for text in ("{", '{"devices": []}', '{"devices": {"1": 2}}', '{"device": {}}'):
        good.write_text(text)
        with pytest.raises(ConfigError):
            load_map(good)
    with pytest.raises(ConfigError):
        load_map(tmp_path / "missing.json")
    sample = ROOT / "bridges" / "onenet_map.sample.json"
    assert load_map(sample).devices  # the sample shipped beside the code loads


def test_the_command_serves_and_stops_on_sigterm(tmp_path: Path, settings: Settings, mapping: StreamMap,
                                                 collector: Any, gas: Device) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps({"devices": mapping.devices, "streams": mapping.streams}))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SC_")}, **settings.env(),
           "PYTHONPATH": str(ROOT)}
    col = collector(f"sc/{gas.community}/gas/{gas.device_id}/telemetry")
    proc = subprocess.Popen([sys.executable, "-m", "smartcommunity", "bridge", "onenet", "--host", "127.0.0.1",
                             "--port", str(port), "--token-file", str(token_file), "--map", str(map_file)],
                            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"

        def up() -> bool:
            try:
                return requests.get(url, params={"msg": "hi", "nonce": "12345678",
                                                 "signature": sign(TOKEN, "12345678", "hi")}, timeout=2).text == "hi"
            except requests.ConnectionError:
                return False

        assert wait_until(up, 60, every=0.2), "the bridge did not answer"
        at = now_ms()
        assert requests.post(url, data=plain_body([point("CH4", 7, at)]), timeout=20).status_code == 200
        assert col.wait_for(lambda m: len(m) == 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert TOKEN not in (proc.stderr.read() if proc.stderr else "")  # never logged
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_help_names_the_bridges_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from bridges import onenet
    from smartcommunity.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bridge", "onenet", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert onenet.DEFAULT_MAX_BODY_BYTES == 1024 * 1024 and "(default 1 MiB)" in text
    assert f"(default {onenet.DEFAULT_DEVICE_RATE:g})" in text and f"(default {onenet.DEFAULT_DEVICE_BURST})" in text
