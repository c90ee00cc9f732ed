"""InfluxDB through its v1 HTTP API only (`/ping`, `/write`, `/query`).

The v1 API is served by InfluxDB 1.x, by 2.x through its v1 compatibility endpoints, and by
3.x Core, so this one module is the whole storage layer for all of them.
"""

from __future__ import annotations

import gzip as _gzip
import re
from dataclasses import dataclass
from typing import Any

import requests

from core.settings import Settings, UrlParts


class InfluxUnavailable(Exception):
    """The database did not answer (connection refused, timeout, 5xx): retry or spool."""


class InfluxRejected(Exception):
    """The database answered 4xx: the batch (or part of it, see `partial`) is bad."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error

    @property
    def partial(self) -> bool:
        return "partial write" in self.error


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, v, strict=False)) | self.tags for v in self.values]


_SAFE_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """InfluxQL identifier quoting."""
    if _SAFE_IDENT.match(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """InfluxQL string literal quoting."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxClient:
    def __init__(self, url: str, db: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        parts = UrlParts.parse(url, default_port=8086)
        self.base = f"{parts.scheme}://{parts.host}:{parts.port}"
        self.db = db
        self.timeout_s = timeout_s
        self._session = requests.Session()
        if parts.username:
            self._session.auth = (parts.username, parts.password or "")

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout_s)
        try:
            resp = self._session.request(method, self.base + path, **kw)
        except requests.RequestException as exc:
            raise InfluxUnavailable(f"{self.base}: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code >= 500:
            raise InfluxUnavailable(f"{self.base}{path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            return self._request("GET", "/ping", timeout=timeout_s).status_code == 204
        except InfluxUnavailable:
            return False

    def write(self, lines: bytes, gzip: bool = False, precision: str = "ms") -> None:
        """Write newline-separated line protocol. Raises InfluxUnavailable or InfluxRejected."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        body = lines
        if gzip:
            body = _gzip.compress(lines, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        resp = self._request(
            "POST", "/write", params={"db": self.db, "precision": precision}, data=body, headers=headers
        )
        if resp.status_code == 404 and "database not found" in resp.text:
            self.create_database()
            resp = self._request(
                "POST", "/write", params={"db": self.db, "precision": precision}, data=body, headers=headers
            )
        if resp.status_code != 204:
            try:
                err = resp.json().get("error", resp.text)
            except ValueError:
                err = resp.text
            raise InfluxRejected(resp.status_code, str(err))

    def query(self, q: str, epoch: str | None = "ms", db: bool = True) -> list[Series]:
        params: dict[str, str] = {"q": q}
        if db:
            params["db"] = self.db
        if epoch:
            params["epoch"] = epoch
        if q.lstrip().upper().startswith(("SELECT", "SHOW")):
            resp = self._request("GET", "/query", params=params)
        else:
            # Statements go in the POST body, never the URL: `CREATE USER … WITH PASSWORD` must not
            # end up in a request log (urllib3 logs URLs at DEBUG; proxies and servers log them too).
            q_body = {"q": params.pop("q")}
            resp = self._request("POST", "/query", params=params, data=q_body)
        if resp.status_code != 200:
            raise InfluxRejected(resp.status_code, resp.text[:500])
        out: list[Series] = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise InfluxRejected(400, result["error"])
            for s in result.get("series", []):
                # A series may come without values (e.g. SHOW CONTINUOUS QUERIES of a db with none).
                out.append(Series(s.get("name", ""), s.get("tags") or {}, s.get("columns") or [],
                                  s.get("values") or []))
        return out

    def rows(self, q: str) -> list[dict[str, Any]]:
        return [r for s in self.query(q) for r in s.rows()]

    def create_database(self) -> None:
        self.query(f"CREATE DATABASE {quote_ident(self.db)}", db=False, epoch=None)


def client_for(settings: Settings, timeout_s: float = 10.0, account: str | None = None) -> InfluxClient:
    """A client of SC_INFLUX_URL/SC_INFLUX_DB with this process's credentials: those in the URL,
    else the account `account` / `SC_INFLUX_ACCOUNT` (password from its 0600 secret file or env)."""
    from core.secrets import read_secret

    client = InfluxClient(settings.influx_url, settings.influx_db, timeout_s=timeout_s)
    acct = account or settings.influx_account
    if acct and (account or not settings.influx.username):
        client._session.auth = (acct, read_secret(settings, "influx", acct))
    return client
