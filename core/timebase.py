"""Beijing time and ISO-8601 timestamps: the one home for both.

The contract speaks UTC (`...Z`, epoch milliseconds); people in Shiyan read China Standard Time
(UTC+8, no daylight saving). Everything that formats, parses or shifts a time imports it from here.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta, timezone

TZ_NAME = "Asia/Shanghai"  # the IANA name, for browsers (Intl.DateTimeFormat timeZone)
BEIJING_OFFSET_S = 8 * 3600  # Asia/Shanghai: UTC+8 all year
BEIJING = timezone(timedelta(seconds=BEIJING_OFFSET_S), "CST")


@functools.lru_cache(maxsize=64)
def _iso_second(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(ms: int) -> str:
    """Epoch milliseconds → `2026-11-25T03:12:00.123Z` (the contract's form).

    A storm of bad messages arrives within a few seconds: strftime runs once per second, not per
    row (it held the GIL the ingest network thread needs; see bench_ingest phase (g)).
    """
    sec, milli = divmod(int(ms), 1000)
    return f"{_iso_second(sec)}{milli:03d}Z"


def iso(t: float) -> str:
    """Epoch seconds → ISO-8601 UTC with milliseconds."""
    return iso_ms(int(t * 1000))


def now_iso() -> str:
    return iso(time.time())


def parse_iso(s: str | None) -> datetime | None:
    """ISO-8601 / RFC 3339 text → aware datetime (naive text is taken as UTC); None if unreadable."""
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def epoch(s: str) -> float:
    """ISO-8601 text → epoch seconds; ValueError if unreadable."""
    dt = parse_iso(s)
    if dt is None:
        raise ValueError(f"not an ISO-8601 time: {s!r}")
    return dt.timestamp()


def beijing(t: float | datetime | None = None) -> datetime:
    """A time (epoch seconds, an aware datetime, or now) in Beijing time."""
    if t is None:
        t = time.time()
    if isinstance(t, datetime):
        return t.astimezone(BEIJING)
    return datetime.fromtimestamp(t, BEIJING)


def beijing_hms(t: float | None = None) -> str:
    return beijing(t).strftime("%H:%M:%S")


def beijing_hour(t_ms: float) -> float:
    """Hour of the Beijing day (0..24, fractional) at epoch milliseconds."""
    return ((t_ms / 1000.0 + BEIJING_OFFSET_S) % 86400.0) / 3600.0


def beijing_day(t_s: float) -> int:
    """Days since the epoch, counted in Beijing time."""
    return int((t_s + BEIJING_OFFSET_S) // 86400)


def local_time(s: str | None, now: datetime | None = None) -> str:
    """An ISO time for a person: HH:MM:SS if today (Beijing), else MM-DD HH:MM."""
    dt = parse_iso(s)
    if dt is None:
        return s or ""
    loc = dt.astimezone(BEIJING)
    today = beijing(now).date()
    return loc.strftime("%H:%M:%S") if loc.date() == today else loc.strftime("%m-%d %H:%M")
