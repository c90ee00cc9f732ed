"""Camera availability by RTSP: cameras that speak RTSP, not MQTT, get the contract's status.

A YAML file lists the cameras (see `rtsp.sample.yaml`):

    timeout_s: 3          # connect + each answer
    offline_after: 2      # consecutive failed checks before a camera is published offline
    min_interval_s: 5     # never checked more often than this, whatever its interval
    max_response_bytes: 65536
    cameras:
      - {device_id: C-000001, url: "rtsp://10.0.0.20:554/Streaming/Channels/101", credentials: hik-door}

Each camera is checked at its registry interval (`interval_s`; the config may set `interval_s` per
camera) by an RTSP `OPTIONS` and a `DESCRIBE` (RFC 2326) with its credentials: Basic or Digest, as
the camera's 401 asks. The credentials are `user:password` in `<secrets>/rtsp/<name>` (0600) or
`SC_SECRET_RTSP_<NAME>`, never in the config or the URL. A `200` to DESCRIBE with an SDP body is
online; no connection, a timeout, a refusal (401 with the right credentials, 404, ...) or an answer
larger than `max_response_bytes` is a failed check. The camera's status is published as the
contract says (`sc/{community}/camera/{device_id}/status`, `{"ts", "state"}`, retained, QoS 1)
at the first check and whenever it changes: `offline` after `offline_after` failed checks in a
row (the alert engine's `camera_offline`), `online` at the first good one (it recovers). Each good
check is also published as telemetry `{"m": {"online": true}}`, so a camera that answers is a
device heard at its interval (no `device_silent`) and is seen by commissioning. A listed
camera that is not in the registry, or not a camera there, is dead-lettered with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import paho.mqtt.client as mqtt

from bridges.common import bridge_client, load_yaml
from core import heartbeat
from core.contract import Reason, device_topic
from core.mqtt import connect
from core.registry import RegistryWatcher, ensure_registry
from core.secrets import SecretError, read_secret
from core.settings import Settings
from ingest.deadletter import DeadLetter, DeadLetterStore, store_path

log = logging.getLogger(__name__)

NAME = "bridge-rtsp"
SOURCE = "rtsp"
USER_AGENT = "smartcommunity-rtsp-check"
WRONG_KIND = "wrong_kind"  # the project's own dead-letter reason: the registry says it is no camera


class ConfigError(ValueError):
    """A camera list that cannot be used; the message names the place."""


@dataclass(frozen=True)
class Camera:
    device_id: str
    url: str
    credentials: str | None = None  # name of the secret holding user:password
    interval_s: float | None = None  # default: the registry's interval_s


@dataclass(frozen=True)
class RtspConfig:
    cameras: tuple[Camera, ...]
    timeout_s: float = 3.0
    offline_after: int = 2
    min_interval_s: float = 5.0
    max_response_bytes: int = 65536


def parse_config(doc: Any, where: str = "rtsp config") -> RtspConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: not a mapping")
    cams = []
    for i, c in enumerate(doc.get("cameras") or []):
        at = f"{where}: camera {i + 1}"
        try:
            cam = Camera(str(c["device_id"]), str(c["url"]), str(c["credentials"]) if c.get("credentials") else None,
                         float(c["interval_s"]) if c.get("interval_s") is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{at}: device_id and url required ({exc})") from None
        u = urlsplit(cam.url)
        if u.scheme != "rtsp" or not u.hostname:
            raise ConfigError(f"{at}: {cam.url!r} is not an rtsp:// URL")
        if u.username or u.password:
            raise ConfigError(f"{at}: credentials in the URL; put user:password in <secrets>/rtsp/NAME (0600) "
                              "and name it as `credentials`")
        cams.append(cam)
    try:
        return RtspConfig(tuple(cams), float(doc.get("timeout_s", 3)), int(doc.get("offline_after", 2)),
                          float(doc.get("min_interval_s", 5)), int(doc.get("max_response_bytes", 65536)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: timeout_s, offline_after, min_interval_s, max_response_bytes: {exc}") from None


def load_config(path: Path) -> RtspConfig:
    return load_yaml(path, parse_config, ConfigError)


class CheckFailed(Exception):
    pass


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def _read_response(sock: socket.socket, limit: int) -> Response:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise CheckFailed("connection closed before an answer")
        buf += chunk
        if len(buf) > limit:
            raise CheckFailed(f"answer larger than {limit} bytes")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    m = re.match(r"RTSP/1\.\d (\d{3}) ?(.*)", lines[0])
    if not m:
        raise CheckFailed(f"not an RTSP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length + len(head) > limit:
        raise CheckFailed(f"answer larger than {limit} bytes")
    while len(rest) < length:
        chunk = sock.recv(min(4096, length - len(rest)))
        if not chunk:
            raise CheckFailed("connection closed in the middle of an answer")
        rest += chunk
    return Response(int(m.group(1)), m.group(2), headers, rest[:length])


def _authorization(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """The Authorization header answering a WWW-Authenticate challenge (Basic or Digest, RFC 2069/2617 MD5)."""
    if challenge.lower().startswith("basic"):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(s: str) -> str:
        return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()

    response = md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:{md5(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"')


def check(url: str, credentials: tuple[str, str] | None, timeout_s: float, limit: int) -> str:
    """OPTIONS then DESCRIBE (answering one 401 with the credentials); returns the SDP's first line.
    Raises CheckFailed (or OSError) for a camera that is not available."""
    u = urlsplit(url)
    uri = urlunsplit(("rtsp", f"{u.hostname}:{u.port or 554}", u.path or "/", u.query, ""))
    with socket.create_connection((u.hostname or "", u.port or 554), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        cseq = 0

        def request(method: str, extra: dict[str, str]) -> Response:
            nonlocal cseq
            cseq += 1
            head = [f"{method} {uri} RTSP/1.0", f"CSeq: {cseq}", f"User-Agent: {USER_AGENT}",
                    *(f"{k}: {v}" for k, v in extra.items())]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            return _read_response(sock, limit)

        challenge: str | None = None

        def auth(method: str) -> dict[str, str]:
            if challenge is None or credentials is None:
                return {}
            return {"Authorization": _authorization(challenge, *credentials, method, uri)}

        for method, extra in (("OPTIONS", {}), ("DESCRIBE", {"Accept": "application/sdp"})):
            resp = request(method, extra | auth(method))  # Digest answers are per method
            if resp.status == 401 and credentials is not None:
                challenge = resp.headers.get("www-authenticate", "")
                resp = request(method, extra | auth(method))
            if resp.status != 200:
                raise CheckFailed(f"{method}: {resp.status} {resp.reason}")
            if method == "DESCRIBE":
                if not resp.body.startswith(b"v="):
                    raise CheckFailed("DESCRIBE: no SDP in the answer")
                return resp.body.splitlines()[0].decode("ascii", "replace")
    raise CheckFailed("unreachable")  # pragma: no cover


@dataclass
class CameraState:
    failures: int = 0
    state: str | None = None  # last published
    last_error: str = ""
    checks: int = 0
    due: float = 0.0  # monotonic time of its next check


def default_client(settings: Settings) -> mqtt.Client:
    return bridge_client(settings, NAME)


@dataclass
class RtspBridge:
    """Checks every camera when due, a few at a time; `check_once(camera)` is one check (tests)."""

    settings: Settings
    config: RtspConfig
    states: dict[str, CameraState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ensure_registry(self.settings)
        self.registry = RegistryWatcher(self.settings.registry_path, self.settings.registry_poll_s)
        self.deadletters = DeadLetterStore(store_path(self.settings.data_path), self.settings.deadletter_max,
                                           self.settings.deadletter_max_bytes)
        self.client = default_client(self.settings)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {"checks": 0, "checks_failed": 0, "published": 0, "deadlettered": 0}
        self.dead_by_reason: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=NAME)
        self._busy: set[str] = set()
        self._dead_said: set[tuple[str, int]] = set()
        self._thread: threading.Thread | None = None
        self._credentials = {c.device_id: self._read_credentials(c) for c in self.config.cameras}

    def _read_credentials(self, cam: Camera) -> tuple[str, str] | None:
        if cam.credentials is None:
            return None
        try:
            text = read_secret(self.settings, SOURCE, cam.credentials)
        except SecretError as exc:
            raise ConfigError(f"camera {cam.device_id}: {exc}") from None
        user, sep, password = text.partition(":")
        if not sep:
            raise ConfigError(f"camera {cam.device_id}: the secret {cam.credentials} holds no user:password")
        return user, password

    def start(self, wait_s: float | None = 10.0) -> None:
        connect(self.client, self.settings, wait_s=wait_s)
        self._thread = threading.Thread(target=self._loop, name=NAME, daemon=True)
        self._thread.start()

    def run_forever(self) -> None:
        self.start()
        while not self._stop.wait(1.0):
            heartbeat.write(self.settings.data_path, NAME, self.snapshot())

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.disconnect()
        self.client.loop_stop()
        self.deadletters.close()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": dict(self.counters), "deadlettered_by_reason": dict(self.dead_by_reason),
                    "devices": {k: {"state": s.state, "failures": s.failures, "error": s.last_error,
                                    "checks": s.checks} for k, s in self.states.items()},
                    "mqtt": "ok" if self.client.is_connected() else "down"}

    def interval(self, cam: Camera) -> float:
        dev = self.registry.current().get(cam.device_id)
        wanted = cam.interval_s or (float(dev.interval_s) if dev is not None else self.config.min_interval_s)
        return max(wanted, self.config.min_interval_s)  # the per-camera rate limit

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for cam in self.config.cameras:
                with self._lock:
                    st = self.states.setdefault(cam.device_id, CameraState())
                    if st.due > now or cam.device_id in self._busy:
                        continue
                    st.due = now + self.interval(cam)
                    self._busy.add(cam.device_id)
                self._pool.submit(self._guarded, cam)
            self._stop.wait(0.2)

    def _guarded(self, cam: Camera) -> None:
        try:
            self.check_once(cam)
        except Exception:  # one camera's bad answer must not end the checks
            log.exception("checking %s failed", cam.device_id)
        finally:
            with self._lock:
                self._busy.discard(cam.device_id)

    def check_once(self, cam: Camera) -> bool:
        """One check of one camera; True when it is available."""
        now_ms = int(time.time() * 1000)
        dev = self.registry.current().get(cam.device_id)
        if dev is None or dev.kind != "camera":
            with self._lock:  # said once per camera and registry version, not at every interval
                said = (cam.device_id, self.registry.reload_count) in self._dead_said
                self._dead_said.add((cam.device_id, self.registry.reload_count))
            if said:
                return False
            reason = str(Reason.UNKNOWN_DEVICE) if dev is None else WRONG_KIND
            detail = (f"{cam.device_id} is not in the registry" if dev is None
                      else f"{cam.device_id} is a {dev.kind} device in the registry, not a camera")
            self._dead(cam, reason, detail, now_ms)
            return False
        with self._lock:
            st = self.states.setdefault(cam.device_id, CameraState())
            st.checks += 1
            self.counters["checks"] += 1
        try:
            check(cam.url, self._credentials.get(cam.device_id), self.config.timeout_s,
                  self.config.max_response_bytes)
        except (OSError, CheckFailed, ValueError) as exc:
            error = str(exc) or type(exc).__name__
            with self._lock:
                st.failures += 1
                st.last_error = error[:200]
                self.counters["checks_failed"] += 1
                due = st.failures >= self.config.offline_after and st.state != "offline"
            if due:
                log.warning("camera %s offline after %d failed checks: %s", cam.device_id, st.failures, error)
                self._status(dev, "offline", now_ms, st)
            return False
        with self._lock:
            st.failures, st.last_error = 0, ""
        if st.state != "online":
            self._status(dev, "online", now_ms, st)
        if self.client.is_connected():  # heard at its interval, as a reporting device is (no device_silent)
            topic = device_topic(dev.community, dev.kind, dev.device_id, "telemetry")
            self.client.publish(topic, orjson.dumps({"ts": now_ms, "m": {"online": True}}), qos=1)
            with self._lock:
                self.counters["published"] += 1
        return True

    def _status(self, dev: Any, state: str, now_ms: int, st: CameraState) -> None:
        if not self.client.is_connected():
            return  # not marked as told: the next check after the broker is back tells it
        topic = device_topic(dev.community, dev.kind, dev.device_id, "status")
        self.client.publish(topic, orjson.dumps({"ts": now_ms, "state": state}), qos=1, retain=True)
        with self._lock:
            st.state = state
            self.counters["published"] += 1

    def _dead(self, cam: Camera, reason: str, detail: str, now_ms: int) -> None:
        host = urlsplit(cam.url).hostname
        self.deadletters.add_many([DeadLetter(f"{SOURCE}/{host}/{cam.device_id}",
                                              orjson.dumps({"device_id": cam.device_id}), reason, detail, now_ms)])
        with self._lock:
            self.counters["deadlettered"] += 1
            self.dead_by_reason[reason] = self.dead_by_reason.get(reason, 0) + 1
