"""Writing one batch of line protocol to InfluxDB, isolating the points it refuses.

InfluxDB 1.x answers a batch containing a bad point (e.g. a field type conflict) with HTTP 400
"partial write": the good points are stored, the bad ones dropped, but it does not say which.
Bisecting finds them: halves that succeed are (re)written — harmless, a point is identified by
(series, ts) — and single lines that still fail are the refused ones, to be dead-lettered.
"""

from __future__ import annotations

from core.influx import InfluxClient, InfluxRejected


def write_isolating(influx: InfluxClient, lines: list[str], body: bytes | None = None,
                    gzip: bool = False) -> list[tuple[int, str]]:
    """Write `lines`; returns (index, error) for each line InfluxDB refuses.

    Raises InfluxUnavailable if the server stops answering (the caller spools the whole batch).
    """
    try:
        influx.write(body if body is not None else "\n".join(lines).encode(), gzip=gzip)
        return []
    except InfluxRejected as exc:
        if len(lines) == 1:
            return [(0, exc.error)]
    mid = len(lines) // 2
    left = write_isolating(influx, lines[:mid], gzip=gzip)
    right = write_isolating(influx, lines[mid:], gzip=gzip)
    return left + [(i + mid, err) for i, err in right]
