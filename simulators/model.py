"""Baseline (no incident) readings: pure functions of (device constants, time, seed).

Local time is Asia/Shanghai (UTC+8, no daylight saving), which drives the daily curves:
cooking hours 11-13 h and 17-19 h for gas, morning/evening water peaks, an evening power peak.
Every value stays well inside the contract's plausible range and below every alert threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.contract import MANHOLE, Device
from core.timebase import beijing_day, beijing_hour
from simulators.noise import gauss, key_of, smooth, u01

Metrics = dict[str, float | bool]


def _bump(h: float, centre: float, width: float) -> float:
    """A smooth daily bump in [0, 1] around `centre` hours, wrapping at midnight."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    return math.exp(-((d / width) ** 2))


def cooking(h: float) -> float:
    """Lunch 11-13 h and dinner 17-19 h."""
    return max(_bump(h, 12.0, 0.7), _bump(h, 18.0, 0.7))


def water_demand(h: float) -> float:
    """Relative demand in ~[0.3, 1.3]: night low, morning and evening peaks."""
    return 0.3 + 0.9 * _bump(h, 7.5, 1.2) + 0.4 * _bump(h, 12.0, 1.5) + 1.0 * _bump(h, 19.5, 1.6)


def power_load(h: float) -> float:
    """Relative load in ~[0.3, 1.0]: evening peak around 20 h."""
    return 0.3 + 0.3 * _bump(h, 12.0, 3.0) + 0.7 * _bump(h, 20.5, 2.2)


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-device constants drawn once from the device key (sizes, offsets, sensor character)."""

    key: int
    kind: str
    install: str
    base: float  # kind-specific nominal level (see `make_profile`)
    scale: float
    has_extra: bool  # optional metric present (water level_m, gas co_ppm)


def make_profile(dev: Device, seed: int) -> Profile:
    key = key_of(dev.device_id, seed)
    install = str(dev.extra.get("install", ""))
    r1, r2, r3 = u01(key, 1, 11), u01(key, 2, 11), u01(key, 3, 11)
    if dev.kind == "gas" and install == MANHOLE:
        # A manhole detector reads methane only: the sewer's own trace, no cooking, no line pressure.
        return Profile(key, "gas", install, 0.3 + 0.4 * r1, r2, False)
    if dev.kind == "gas":
        # Kitchens sit on the low-pressure network (~2 kPa); pipe wells (管井) on medium pressure.
        well = "井" in install or "well" in install
        base = 200.0 + 100.0 * r1 if well else 1.9 + 0.3 * r1
        return Profile(key, "gas", install, base, r2, not well or r3 < 0.5)
    if dev.kind == "water":
        inlet = "进水口" in install or "inlet" in install
        base = 0.35 + 0.12 * r1  # static pressure MPa
        flow = (15.0 + 60.0 * r2) if inlet else (4.0 + 10.0 * r2)  # peak flow m3/h
        return Profile(key, "water", install, base, flow, not inlet or r3 < 0.3)
    if dev.kind == "power":
        rated = 40.0 + 200.0 * r1  # rated current A of the feeder/breaker
        return Profile(key, "power", install, rated, 5.0 + 30.0 * r2, True)
    return Profile(key, dev.kind, install, 2048.0 * (1 + r1), 0.0, r2 < 0.8)


def baseline(p: Profile, t_ms: int, k: int) -> Metrics:
    """Readings of device `p` at time `t_ms` (sample index `k` seeds the per-sample noise)."""
    t_s = t_ms / 1000.0
    h = beijing_hour(t_ms)
    key = p.key
    if p.kind == "gas" and p.install == MANHOLE:
        lel = p.base + 0.1 * smooth(key, t_s, 3600.0, 22) + 0.05 * gauss(key, k, 23)
        return {"lel_pct": round(max(0.0, lel), 2)}
    if p.kind == "gas":
        day = beijing_day(t_s)
        cook = cooking(h) * (0.5 + 2.5 * u01(key, day, 21))  # some households cook more
        lel = 0.25 + 0.15 * smooth(key, t_s, 3600.0, 22) + cook + 0.08 * gauss(key, k, 23)
        m: Metrics = {
            "lel_pct": round(max(0.0, lel), 2),
            "pressure_kpa": round(p.base * (1 + 0.01 * smooth(key, t_s, 1800.0, 24))
                                  + 0.002 * p.base * gauss(key, k, 25), 3),
            "valve_open": True,
        }
        if p.has_extra:
            m["co_ppm"] = round(max(0.0, 2.0 + 6.0 * cook + 0.8 * gauss(key, k, 26)), 1)
        return m
    if p.kind == "water":
        d = water_demand(h) * (1 + 0.08 * smooth(key, t_s, 1200.0, 31))
        m = {
            # Pressure sags as demand (and friction loss) rises.
            "pressure_mpa": round(p.base - 0.08 * d + 0.004 * gauss(key, k, 32), 4),
            "flow_m3h": round(max(0.0, p.scale * d / 1.3 + 0.02 * p.scale * gauss(key, k, 33)), 3),
            "leak": False,
        }
        if p.has_extra:  # tank / sump level, drawn down at peaks
            m["level_m"] = round(2.5 - 0.6 * d + 0.1 * smooth(key, t_s, 900.0, 34)
                                 + 0.01 * gauss(key, k, 35), 3)
        return m
    if p.kind == "power":
        load = power_load(h) * (1 + 0.1 * smooth(key, t_s, 600.0, 41)) + 0.02 * gauss(key, k, 42)
        load = max(0.05, load)
        current = p.base * load
        voltage = 229.0 - 11.0 * load + 0.8 * gauss(key, k, 43)  # sag under load
        ambient = 20.0 + 5.0 * math.sin((h - 9.0) / 24.0 * 2 * math.pi) + 2.0 * smooth(key, t_s, 7200.0, 44)
        temp = ambient + 30.0 * load * load + 0.3 * gauss(key, k, 45)  # I²R heating follows current
        return {
            "voltage_v": round(voltage, 1),
            "current_a": round(current, 2),
            "leakage_ma": round(max(0.0, p.scale + 2.0 * smooth(key, t_s, 1800.0, 46)
                                    + 0.8 * gauss(key, k, 47)), 1),
            "temp_c": round(temp, 1),
            "power_kw": round(voltage * current * 0.92 / 1000.0, 2),
        }
    # camera: 25 fps with a rare short dropout in frame rate and bitrate.
    fps = 25.0
    rate = p.base * (1 + 0.1 * smooth(key, t_s, 300.0, 51)) + 0.03 * p.base * gauss(key, k, 52)
    if u01(key, k, 53) < 0.004:
        dip = 0.3 + 0.6 * u01(key, k, 54)
        fps, rate = round(25.0 * dip), rate * dip
    m = {"online": True, "fps": fps, "bitrate_kbps": round(max(0.0, rate), 1)}
    if p.has_extra:
        m["storage_ok"] = True
    return m
