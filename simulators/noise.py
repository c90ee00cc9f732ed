"""Counter-based pseudo-randomness: every random draw is a hash of (seed, device, sample, salt).

Why not `random.Random`: a hash makes each value a pure function of its inputs, so a device's
reading at time t does not depend on what other devices or earlier ticks drew (deterministic
under any filtering, batching or speed).
"""

from __future__ import annotations

import hashlib
import math

_MASK = (1 << 64) - 1
_INV53 = 2.0**-53


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def key_of(text: str, seed: int) -> int:
    """A 64-bit key for a name under a seed (stable across processes, unlike hash())."""
    h = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def u01(key: int, a: int, salt: int = 0) -> float:
    """Uniform in [0, 1) from (key, a, salt)."""
    return (mix64(key ^ mix64((a & _MASK) ^ (salt * 0x632BE59BD9B4E019 & _MASK))) >> 11) * _INV53


def sym(key: int, a: int, salt: int = 0) -> float:
    """Uniform in [-1, 1)."""
    return 2.0 * u01(key, a, salt) - 1.0


def gauss(key: int, a: int, salt: int = 0) -> float:
    """Approximately standard normal (sum of 4 uniforms, scaled): cheap and bounded (|x| < 3.5)."""
    s = u01(key, a, salt) + u01(key, a, salt + 101) + u01(key, a, salt + 202) + u01(key, a, salt + 303)
    return (s - 2.0) * 1.7320508


def smooth(key: int, t_s: float, period_s: float, salt: int = 0) -> float:
    """Value noise in [-1, 1] varying smoothly over `period_s` (slow sensor drift, weather, load)."""
    x = t_s / period_s
    i = math.floor(x)
    f = x - i
    f = f * f * (3.0 - 2.0 * f)  # smoothstep: continuous slope at the knots
    a = sym(key, i, salt)
    b = sym(key, i + 1, salt)
    return a + (b - a) * f
