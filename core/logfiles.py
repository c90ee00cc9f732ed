"""Log files that rotate by size: what a child process writes, copied line by line into
`logging.handlers.RotatingFileHandler` files by one thread of the process that started it.

`up` gives each part's output (stdout and stderr) to a pump writing `SC_DATA_DIR/log/<part>.log`
(and echoing it on `up`'s own stderr, as before), and the output of the Mosquitto and InfluxDB it
starts to `mosquitto/mosquitto.log` and `influxdb/influxd.log`, each rotated past
`SC_LOG_MAX_BYTES` keeping `SC_LOG_BACKUPS` older files. One writer per file, so rotation never
races between processes. A log line that cannot be written (full disk) is dropped, never blocking
the child: a pump that stopped reading would stall it once the pipe fills. Under systemd the
parts write to the journal instead (`smartcommunity install`).
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
from pathlib import Path
from typing import IO

from core.settings import Settings


def log_dir(settings: Settings) -> Path:
    return settings.data_path / "log"


class _Quiet(logging.handlers.RotatingFileHandler):
    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1  # e.g. a full disk: the line is lost, the child goes on


def rotating_file(path: Path, settings: Settings) -> logging.handlers.RotatingFileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _Quiet(path, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups,
                     encoding="utf-8", errors="replace", delay=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class LogPump:
    """Copies the lines of `stream` (a child's stdout) into a rotating file, and to `echo` if given."""

    def __init__(self, stream: IO[bytes], path: Path, settings: Settings, echo: IO[str] | None = None) -> None:
        self.handler = rotating_file(path, settings)
        self.stream = stream
        self.echo = echo
        self.thread = threading.Thread(target=self._run, name=f"sc-log-{path.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for raw in iter(self.stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
                self.handler.flush()
                if self.echo is not None:
                    try:
                        print(line, file=self.echo, flush=True)
                    except (OSError, ValueError):
                        self.echo = None  # our own stderr went away: keep the file
        except (OSError, ValueError):
            pass  # the pipe closed under us
        finally:
            self.handler.close()

    def join(self, timeout_s: float = 5.0) -> None:
        self.thread.join(timeout_s)


def roll_if_big(path: Path, settings: Settings) -> None:
    """For a log file a detached process appends to (no pump can rotate it): rotate at its next start."""
    try:
        big = path.stat().st_size > settings.log_max_bytes
    except OSError:
        return
    if big:
        handler = rotating_file(path, settings)
        handler.doRollover()
        handler.close()
