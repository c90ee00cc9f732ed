"""China Mobile OneNET data push (HTTP) → the devices' telemetry and status on the broker.

OneNET's "数据推送" calls an HTTP endpoint of ours:

- URL check: `GET ?msg=M&nonce=N&signature=S` with S = Base64(MD5(token + N + M)); we answer
  `M` (nothing else) when it verifies, 403 otherwise.
- Data: `POST` JSON bodies, plain `{"msg": ..., "nonce": N, "msg_signature": S}` with
  S = Base64(MD5(token + N + msg-as-string)), or "安全模式" `{"enc_msg": E, "nonce": N,
  "msg_signature": S}` with S over E. Every POST is verified; a wrong or missing signature is
  refused (403) and counted, never stored: anyone who can reach the port could otherwise fill
  the dead-letter store and push real dead letters out of it. "msg-as-string" is the text the
  platform sent: a string `msg` as it is, an object or list as its exact text in the body (or,
  as the platform's Java SDK re-serialises it, compact JSON) — each is tried.
- Encrypted `E` (format implemented here): Base64 of AES-CBC(key, iv = key[:16], PKCS#7) where
  key = Base64-decode(aeskey + "=") (the platform shows 43 characters: a 32-byte AES-256 key)
  and the plaintext is 16 random bytes, the message length as 4 bytes big-endian, the message
  (UTF-8 JSON), then anything (the platform's id); only the counted message bytes are used.
- `msg` is one object or a list: type 1 data point `{"type": 1, "dev_id", "ds_id", "at" (ms),
  "value"}`, type 2 online/offline `{"type": 2, "dev_id", "status": 0|1, "login_type", "at"}`.

Mapping: `--map` FILE `{"devices": {dev_id: device_id}, "streams": {ds_id: metric}}`; what the
map does not name is taken as it is, so it must then be a registered device_id / a metric of the
device's kind. Each point becomes `{"ts": at, "seq": at, "m": {metric: value}}` on
`sc/{community}/{kind}/{device_id}/telemetry` (points of one device at one `at` in one push share
a message), type 2 `{"ts": at, "state": "online"|"offline"}` on `.../status` (retained unless older
than the status already retained), QoS 1.
`ts` and `seq` come from `at` alone, so a push the platform repeats (it retries anything but a
200) gives the same (device, ts) and ingest stores it once (contract §3, at-least-once).

Each message is checked by `core.validation.validate()` before it is published; what fails, an
unknown device or stream, a bad value or timestamp, a message type not bridged, a msg that is not
JSON, an undecryptable enc_msg, a device over its points/s budget, goes to ingest's dead-letter
store (`smartcommunity deadletter list`) with the contract's reason (`unknown_device`,
`unknown_metric`, `bad_value`, `bad_timestamp`, `bad_payload`, `bad_json`) or one of the
project's own (`rate_limited`, `undecryptable`), topic `onenet/<dev_id>/<ds_id|status>` (`onenet`
for a whole msg) and the OneNET item as the payload. The answer is 200 only once every message is
acknowledged by the broker (PUBACK) and every dead letter is stored; otherwise 503, and the
platform's retry is harmless. Bodies over the size limit get 413.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import re
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bridges.common import bridge_client
from core import heartbeat
from core.contract import MAX_PAYLOAD_BYTES, METRICS, Device, Reason, device_topic
from core.mqtt import connect
from core.registry import RegistryWatcher, ensure_registry
from core.settings import Settings
from core.validation import Rejected, validate
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path
from ingest.ratelimit import RATE_LIMITED, DeviceBudget

log = logging.getLogger(__name__)

NAME = "bridge-onenet"  # heartbeat file SC_DATA_DIR/run/bridge-onenet.json
SOURCE = "onenet"  # first part of a dead letter's topic
UNDECRYPTABLE = "undecryptable"  # project's own dead-letter reason: enc_msg that the AES key does not open
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # one push; the platform batches at most a few hundred points
DEFAULT_DEVICE_RATE = 2.0  # points/s one device may push on average (detectors report every few s)...
DEFAULT_DEVICE_BURST = 120  # ... and at once (a backlog the platform sends after an outage)
PUBLISH_TIMEOUT_S = 5.0  # the broker's PUBACKs must come within this, or the push is answered 503
HEARTBEAT_S = 1.0
LOG_EVERY_S = 10.0  # refusals are logged at most this often (they are all counted)
STATES = {0: "offline", 1: "online"}

ClientFactory = Callable[[Settings], mqtt.Client]


class ConfigError(ValueError):
    """A map file, token file or AES key that cannot be used (the message names the file, never a secret)."""


# ---- the platform's signature and encryption ---------------------------------------------------

def signature(token: str, nonce: str, msg: str) -> str:
    """Base64(MD5(token + nonce + msg)), as OneNET signs its URL check and its pushes."""
    return base64.b64encode(hashlib.md5((token + nonce + msg).encode()).digest()).decode()


def verify(token: str, nonce: str, msg: str, sig: str) -> bool:
    # A '+' of the Base64 arrives as ' ' when the platform does not URL-encode the query.
    return hmac.compare_digest(signature(token, nonce, msg).encode(), sig.replace(" ", "+").encode())


def aes_key(aeskey: str) -> bytes:
    """The AES key from the platform's key text: Base64-decode(aeskey + "=")."""
    try:
        key = base64.b64decode(aeskey.strip() + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the OneNET AES key is not Base64 text") from None
    if len(key) not in (16, 24, 32):
        raise ConfigError(f"the OneNET AES key decodes to {len(key)} bytes, not 16, 24 or 32")
    return key


def decrypt(enc_msg: str, key: bytes) -> bytes:
    """The message bytes inside `enc_msg` (format in the module docstring); ValueError if it does not open."""
    try:
        raw = base64.b64decode(enc_msg, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("enc_msg is not Base64") from None
    if not raw or len(raw) % 16:
        raise ValueError("enc_msg is not whole AES blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = dec.update(raw) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    plain = unpad.update(padded) + unpad.finalize()  # ValueError on bad padding: a wrong key
    if len(plain) < 20:
        raise ValueError("plaintext shorter than its 20-byte header")
    n = int.from_bytes(plain[16:20], "big")
    if n > len(plain) - 20:
        raise ValueError(f"message length {n} beyond the plaintext")
    return plain[20:20 + n]


_DEC = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def members_raw(text: str) -> dict[str, str]:
    """Each top-level member of a JSON object with its value's exact text (what the platform signed)."""
    out: dict[str, str] = {}
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    if text[i:i + 1] == "}":
        return out
    while True:
        key, i = _DEC.raw_decode(text, i)
        if not isinstance(key, str):
            raise ValueError("object key is not a string")
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text[i:i + 1] != ":":
            raise ValueError("':' expected")
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        _, end = _DEC.raw_decode(text, i)
        out[key] = text[i:end]
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        c = text[i:i + 1]
        if c == "}":
            return out
        if c != ",":
            raise ValueError("',' or '}' expected")
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]


# ---- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamMap:
    """OneNET names → ours. What is not named is taken as it is."""

    devices: dict[str, str] = field(default_factory=dict)
    streams: dict[str, str] = field(default_factory=dict)

    def device(self, dev_id: str) -> str:
        return self.devices.get(dev_id, dev_id)

    def metric(self, ds_id: str) -> str:
        return self.streams.get(ds_id, ds_id)


def load_map(path: Path) -> StreamMap:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) - {"devices", "streams"}:
        raise ConfigError(f'{path}: expected {{"devices": {{...}}, "streams": {{...}}}} and nothing else')
    parts: dict[str, dict[str, str]] = {}
    for name in ("devices", "streams"):
        d = doc.get(name, {})
        if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
            raise ConfigError(f"{path}: {name} must map strings to strings")
        parts[name] = d
    return StreamMap(parts["devices"], parts["streams"])


def read_private_text(path: Path, what: str) -> str:
    """A credential from a file that only its owner can read (0600 or stricter)."""
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{what} file {path} is readable by others "
                              f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it")
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what} file {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what} file {path} is empty")
    return text


# ---- the bridge ---------------------------------------------------------------------------------

@dataclass
class Outgoing:
    topic: str
    payload: dict[str, Any]
    retain: bool
    sources: list[tuple[str, bytes]]  # (where from, OneNET item) of each point it carries


class Reply:
    def __init__(self, status: int, body: str = "", ctype: str = "text/plain; charset=utf-8") -> None:
        self.status, self.body, self.ctype = status, body, ctype


STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
               405: "405 Method Not Allowed", 413: "413 Payload Too Large", 500: "500 Internal Server Error",
               503: "503 Service Unavailable"}


def default_client(settings: Settings) -> mqtt.Client:
    return bridge_client(settings, NAME)


class OneNetBridge:
    """The endpoint's logic as a WSGI app (`self.wsgi`), its MQTT client, dead letters and counters."""

    def __init__(
        self,
        settings: Settings,
        token: str,
        aeskey: str | None = None,
        mapping: StreamMap | None = None,
        *,
        client_factory: ClientFactory = default_client,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        device_rate: float = DEFAULT_DEVICE_RATE,
        device_burst: int = DEFAULT_DEVICE_BURST,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        if not token:
            raise ConfigError("no OneNET token")
        self.settings = settings
        self.token = token
        self.key = aes_key(aeskey) if aeskey else None
        self.mapping = mapping or StreamMap()
        self.max_body_bytes = max_body_bytes
        self.publish_timeout_s = publish_timeout_s
        ensure_registry(settings)
        self.registry = RegistryWatcher(settings.registry_path, settings.registry_poll_s)
        self.deadletters = DeadLetterStore(store_path(settings.data_path), settings.deadletter_max,
                                           settings.deadletter_max_bytes)
        self.budget = DeviceBudget(device_rate, device_burst)
        self._over_budget = f"over the bridge's per-device budget of {device_rate:g} points/s (burst {device_burst})"
        self.counters: Counter[str] = Counter()
        self.dead_by_reason: Counter[str] = Counter()
        self._warned: dict[str, tuple[float, int]] = {}  # warning -> (last logged, refused since)
        self._status_at: dict[str, int] = {}  # device_id -> `at` of the newest status published retained
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.client = client_factory(settings)
        self._beat = threading.Thread(target=self._heartbeat_loop, name=f"{NAME}-heartbeat", daemon=True)

    # -- life cycle --
    def start(self, wait_s: float | None = 10.0) -> None:
        connect(self.client, self.settings, wait_s=wait_s)
        self._beat.start()

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()  # first: the network loop then ends at once instead of at its next select timeout
        self.client.loop_stop()
        self.deadletters.close()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": dict(self.counters), "deadlettered_by_reason": dict(self.dead_by_reason),
                    "mqtt": "ok" if self.client.is_connected() else "down",
                    "rate_limited_devices": self.budget.recent()}

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                heartbeat.write(self.settings.data_path, NAME, self.snapshot())
            except OSError as exc:
                log.warning("heartbeat not written: %s", exc)

    # -- HTTP --
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            reply = self.handle(environ)
        except Exception:  # answered 500: the platform retries, and the trace is in the log
            log.exception("OneNET push failed")
            self._count("errors")
            reply = Reply(500, "error")
        body = reply.body.encode()
        start_response(STATUS_TEXT.get(reply.status, f"{reply.status} Error"),
                       [("Content-Type", reply.ctype), ("Content-Length", str(len(body)))])
        return [body]

    def handle(self, environ: dict[str, Any]) -> Reply:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "GET":
            return self.url_check(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if method != "POST":
            return Reply(405, "GET or POST")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.max_body_bytes:
            self._count("refused_too_large")
            return Reply(413, f"body over {self.max_body_bytes} bytes")
        raw = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read(self.max_body_bytes + 1)
        if len(raw) > self.max_body_bytes:
            self._count("refused_too_large")
            return Reply(413, f"body over {self.max_body_bytes} bytes")
        return self.push(raw)

    def url_check(self, q: dict[str, list[str]]) -> Reply:
        msg, nonce, sig = (q.get(k, [None])[0] for k in ("msg", "nonce", "signature"))
        if msg is None or nonce is None or sig is None:
            self._count("refused_url_check")
            return Reply(400, "msg, nonce and signature required")
        if not verify(self.token, nonce, msg, sig):
            self._count("refused_url_check")
            self._warn("OneNET URL check with a wrong signature refused")
            return Reply(403, "signature mismatch")
        self._count("url_checks")
        return Reply(200, msg)  # the bare msg: the platform compares it byte for byte

    def push(self, raw: bytes) -> Reply:
        """One POST: authenticate, unwrap, map, publish, dead-letter; the answer the platform gets."""
        self._count("pushes")
        now_ms = int(time.time() * 1000)
        try:
            text = raw.decode("utf-8")
            doc = json.loads(text)
            members = members_raw(text)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._count("refused_malformed")
            return Reply(400, "body is not a JSON object")
        nonce, sig = doc.get("nonce"), doc.get("msg_signature")
        if not isinstance(nonce, str) or not isinstance(sig, str) or ("msg" not in doc and "enc_msg" not in doc):
            self._count("refused_malformed")
            return Reply(400, "msg or enc_msg, nonce and msg_signature required")

        if "enc_msg" in doc:
            enc = doc["enc_msg"]
            if not isinstance(enc, str) or not verify(self.token, nonce, enc, sig):
                return self._bad_signature()
            if self.key is None:
                return self._settle([], [self._letter(SOURCE, raw, UNDECRYPTABLE,
                                                      "an encrypted push, but no AES key is configured", now_ms)])
            try:
                plain = decrypt(enc, self.key)
            except ValueError as exc:
                return self._settle([], [self._letter(SOURCE, raw, UNDECRYPTABLE, str(exc), now_ms)])
            try:
                msg: Any = json.loads(plain.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                return self._settle([], [self._letter(SOURCE, plain, Reason.BAD_JSON, str(exc)[:200], now_ms)])
        else:
            msg = doc["msg"]
            signed = [msg] if isinstance(msg, str) else [
                members.get("msg", ""), json.dumps(msg, ensure_ascii=False, separators=(",", ":"))]
            if not any(verify(self.token, nonce, s, sig) for s in signed):
                return self._bad_signature()
            if isinstance(msg, str):  # msg sent as a string of JSON
                try:
                    msg = json.loads(msg)
                except (ValueError, RecursionError) as exc:
                    return self._settle([], [self._letter(SOURCE, msg.encode(), Reason.BAD_JSON,
                                                          str(exc)[:200], now_ms)])
        items = msg if isinstance(msg, list) else [msg]
        self._count("items", len(items))
        return self._settle(*self.translate(items, now_ms))

    def _bad_signature(self) -> Reply:
        self._count("refused_signature")
        self._warn("OneNET push with a wrong msg_signature refused")
        return Reply(403, "signature mismatch")

    def _warn(self, what: str) -> None:
        """Log a refusal at most every LOG_EVERY_S per kind, with how many there were: a flood of
        forged requests must not flood the log."""
        now = time.monotonic()
        with self._lock:
            last, n = self._warned.get(what, (now - LOG_EVERY_S, 0))
            if now - last < LOG_EVERY_S:
                self._warned[what] = (last, n + 1)
                return
            self._warned[what] = (now, 0)
        log.warning("%s (%d more since the last such warning)", what, n)

    def _letter(self, topic: str, payload: bytes, reason: str, detail: str, now_ms: int) -> DeadLetter:
        return DeadLetter(topic, payload, str(reason), detail, now_ms)

    # -- mapping --
    def translate(self, items: list[Any], now_ms: int) -> tuple[list[Outgoing], list[DeadLetter]]:
        """OneNET items → messages to publish (grouped per device and `at`) and dead letters."""
        registry = self.registry.current()
        out: dict[tuple[str, int | str], Outgoing] = {}
        dead: list[DeadLetter] = []
        for item in items:
            src = json.dumps(item, ensure_ascii=False).encode()  # any parsed JSON (orjson refuses ints past 64 bits)
            where = SOURCE
            try:
                if not isinstance(item, dict):
                    raise Rejected(Reason.BAD_PAYLOAD, "a msg item is not a JSON object")
                dev_id = str(item.get("dev_id", ""))
                kind_of_msg = item.get("type")
                where = f"{SOURCE}/{dev_id}/{item.get('ds_id', 'status') if kind_of_msg == 1 else 'status'}"
                if len(src) > MAX_PAYLOAD_BYTES:
                    raise Rejected(Reason.BAD_JSON, f"item of {len(src)} bytes > {MAX_PAYLOAD_BYTES}")
                if kind_of_msg not in (1, 2):
                    raise Rejected(Reason.BAD_PAYLOAD, f"OneNET message type {str(kind_of_msg)[:16]} is not bridged")
                dev = self._device(dev_id, registry)
                at = _at(item.get("at"))
                if kind_of_msg == 1:
                    ds_id = str(item.get("ds_id", ""))
                    metric = self.mapping.metric(ds_id)
                    m = {metric: _value(dev, metric, item.get("value"))}
                    topic = device_topic(dev.community, dev.kind, dev.device_id, "telemetry")
                    payload: dict[str, Any] = {"ts": at, "seq": at, "m": m}
                    detail_of = f"stream {ds_id!r} as {metric!r}: "
                else:
                    state = STATES.get(item.get("status"))  # type: ignore[arg-type]
                    if state is None:
                        raise Rejected(Reason.BAD_PAYLOAD, f"status {str(item.get('status'))[:16]} is not 0 or 1")
                    topic = device_topic(dev.community, dev.kind, dev.device_id, "status")
                    payload = {"ts": at, "state": state}
                    detail_of = ""
                try:
                    validate(topic, orjson.dumps(payload), registry, now_ms)  # the one validator decides
                except Rejected as r:
                    raise Rejected(r.reason, detail_of + r.detail) from None
                with self._lock:
                    allowed = self.budget.allow(dev.device_id, time.monotonic(), at)
                if not allowed:
                    dead.append(self._letter(where, src, RATE_LIMITED, self._over_budget, now_ms))
                    continue
            except Rejected as r:
                dead.append(self._letter(where, src, r.reason, f"dev_id {str(item.get('dev_id'))[:64]}: {r.detail}"
                                         if isinstance(item, dict) else r.detail, now_ms))
                continue
            key = (topic, at)
            if key in out and kind_of_msg == 1:
                out[key].payload["m"].update(payload["m"])
                out[key].sources.append((where, src))
            elif kind_of_msg == 2:
                # Retained only if not older than the last status retained: a late or retried
                # "online" must not overwrite a newer "offline" for whoever subscribes next.
                with self._lock:
                    newest = at >= self._status_at.get(dev.device_id, at)
                    if newest:
                        self._status_at[dev.device_id] = at
                out[key] = Outgoing(topic, payload, newest, [(where, src)])
            else:
                out[key] = Outgoing(topic, payload, False, [(where, src)])
        return list(out.values()), dead

    def _device(self, dev_id: str, registry: Any) -> Device:
        device_id = self.mapping.device(dev_id)
        dev = registry.get(device_id)
        if dev is None:
            mapped = f" (mapped to {device_id})" if device_id != dev_id else ""
            raise Rejected(Reason.UNKNOWN_DEVICE, f"OneNET device {dev_id[:64]!r}{mapped} is not in the registry")
        return dev

    # -- delivery --
    def _settle(self, out: list[Outgoing], dead: list[DeadLetter]) -> Reply:
        """Publish and dead-letter; 200 only when the broker has acknowledged everything."""
        if dead:
            self.deadletters.add_many(dead)  # durable before the answer: a 200 means nothing is lost
            with self._lock:
                self.counters["deadlettered"] += len(dead)
                for d in dead:
                    self.dead_by_reason[d.reason] += 1
            log.info("%d OneNET item(s) dead-lettered: %s", len(dead), sorted({d.reason for d in dead}))
        if not out:
            return Reply(200, "ok")
        if not self.client.is_connected():
            # Not queued in paho while the broker is away (that queue would grow with every retry):
            # the platform keeps the push and retries it.
            self._count("unavailable")
            return Reply(503, "broker unavailable")
        infos = [self.client.publish(o.topic, orjson.dumps(o.payload), qos=1, retain=o.retain) for o in out]
        deadline = time.monotonic() + self.publish_timeout_s
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):  # judged by is_published() below
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not all(i.is_published() for i in infos):
            self._count("unavailable")
            return Reply(503, "broker did not acknowledge")
        self._count("published", len(out))
        self._count("points", sum(len(o.sources) for o in out))
        return Reply(200, "ok")


def _at(raw: Any) -> int:
    """The platform's `at` (ms; an integer, sometimes sent as a string of digits)."""
    if isinstance(raw, bool):
        raise Rejected(Reason.BAD_TIMESTAMP, "at is a boolean")
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        raw = int(raw)
    if isinstance(raw, int) and 0 <= raw < 10**15:  # (the year 33658: the contract's window judges further)
        return raw
    raise Rejected(Reason.BAD_TIMESTAMP, f"at {str(raw)[:32]!r} is not epoch milliseconds")


def _value(dev: Device, metric: str, raw: Any) -> float | bool:
    """A OneNET value as the metric's type: numbers may come as numeric strings, booleans as 0/1."""
    spec = METRICS[dev.kind].get(metric)
    if spec is None:
        raise Rejected(Reason.UNKNOWN_METRIC, f"{metric[:64]!r} is not a metric of kind {dev.kind}")
    if spec.is_bool:
        if isinstance(raw, bool):
            return raw
        if raw in (0, 1, "0", "1", "true", "false"):
            return raw in (1, "1", "true")
        raise Rejected(Reason.BAD_VALUE, f"{metric} must be a boolean (or 0/1), got {str(raw)[:32]!r}")
    if isinstance(raw, str):
        try:
            return float(raw)  # range and finiteness are validate()'s to judge
        except ValueError:
            pass
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Rejected(Reason.BAD_VALUE, f"{metric} must be a number, got {str(raw)[:32]!r}")
    try:
        return float(raw)
    except OverflowError:  # an integer past any float
        raise Rejected(Reason.BAD_VALUE, f"{metric} is out of range") from None


def serve(bridge: OneNetBridge, host: str, port: int, threads: int = 4) -> Any:
    """A waitress server for the bridge (not yet running: call `.run()`, stop with `.close()`)."""
    from waitress import create_server

    # waitress's own cap is a backstop for chunked bodies; the bridge answers 413 (and counts) first.
    return create_server(bridge.wsgi, host=host, port=port, threads=threads, ident="smartcommunity",
                         max_request_body_size=2 * bridge.max_body_bytes + 1024, channel_timeout=30,
                         connection_limit=200)
