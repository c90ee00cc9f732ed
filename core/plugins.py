"""Registration by presence: the modules of a package, found by looking, not by a closed list.

A new trigger, channel or page is a new module in its folder; the folder's package asks this for
its modules (sorted by name, or by a module's `ORDER` where the order is shown to people) instead
of keeping a tuple that a newcomer must remember to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules_in(package: ModuleType, *, having: str) -> list[ModuleType]:
    """Every submodule of `package` that defines `having`, by `ORDER` then by name."""
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(mod, having):
            found.append(mod)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 0), m.__name__))
