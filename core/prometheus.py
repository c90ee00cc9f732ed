"""Prometheus text exposition (format 0.0.4): the one builder every /metrics producer uses."""

from __future__ import annotations

import math
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def number(v: Any) -> float | None:
    """A sample value, or None for anything that is not a finite number (or bool)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


class Exposition:
    """Samples grouped by family, so each family gets one HELP/TYPE header however many series."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, mtype: str, help_: str, labels: dict[str, Any], value: float) -> None:
        lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
        self.families.setdefault(name, (mtype, help_, []))[2].append(f"{name}{{{lab}}} {_fmt(value)}")

    def text(self) -> str:
        lines: list[str] = []
        for name, (mtype, help_, samples) in self.families.items():
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {mtype}", *samples]
        return "\n".join(lines) + "\n" if lines else ""
