"""Sending a staff command to the alerts service (the dashboard, the CLI, the demo's staff).

`send` returns the service's `Answer`, or raises `ServiceDown` when the service is not there or did
not take the command (then nothing was applied, and the caller says so: the web answers 503). A
retry of the same `Command` (same id) is safe: the service answers it from what it kept.
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import orjson

from alerts.command import WAIT_S, Answer, Command, ServiceDown, endpoint_path
from core.settings import Settings

DOWN = "告警服务未运行，操作未执行，请稍后重试 (the alerts service is not running: nothing was applied)"


def endpoint(settings: Settings) -> tuple[str, int, str]:
    try:
        doc = orjson.loads(endpoint_path(settings.data_path).read_bytes())
        url = urlsplit(doc["url"])
        return url.hostname or "127.0.0.1", int(url.port or 80), str(doc["secret"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceDown(DOWN) from exc


def send(settings: Settings, cmd: Command, *, retries: int = 1) -> Answer:
    """Send `cmd`; a connection lost after sending is retried with the same id (applied once)."""
    body = orjson.dumps(cmd.as_json())
    last: Exception | None = None
    for attempt in range(retries + 1):
        host, port, secret = endpoint(settings)
        conn = http.client.HTTPConnection(host, port, timeout=WAIT_S + 20)
        try:
            conn.request("POST", "/command", body=body, headers={
                "Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            doc = orjson.loads(resp.read())
        except ConnectionRefusedError as exc:
            raise ServiceDown(DOWN) from exc  # nobody listened: nothing was sent
        except (OSError, http.client.HTTPException, orjson.JSONDecodeError) as exc:
            last = exc  # sent, but the answer was lost: ask again with the same id
            time.sleep(0.2 * (attempt + 1))
            continue
        finally:
            conn.close()
        if resp.status == 503:
            raise ServiceDown(str(doc.get("error") or DOWN))
        if resp.status != 200:
            raise ServiceDown(f"the alerts service refused the command ({resp.status}): {doc.get('error')}")
        return Answer(int(doc["status"]), dict(doc["body"]))
    raise ServiceDown(DOWN) from last


def command(settings: Settings, command: str, actor: str | None, via: str, **args: object) -> Answer:
    """Build and send one command (arguments left None are not sent)."""
    return send(settings, Command(command, {k: v for k, v in args.items() if v is not None}, actor, via))
