"""An alert engine over some communities of the street (`smartcommunity alerts --communities a,b`).

Every rule judges one device, or one place inside one community (a compound, a building, a
community; group patterns are kept inside a community too: alerts/triggers/group.py), so engines
over disjoint sets of communities raise together exactly what one engine over all of them raises.
Each partition has its own broker session (client id, and on a secure broker its own account:
core.accounts.alerts_account), reads only its communities' forwarded records and alert copies,
and sees of the shared alert store only what belongs to its communities: open alerts by their
community, condition state by its subject's community (device, compound, building or community
id), last-heard times by device. So one partition never resolves, escalates, re-publishes or
forgets another's alerts or conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.contract import COMMUNITIES, Alert, Device
from core.registry import Registry, RegistryWatcher


class PartitionError(ValueError):
    pass


def parse_communities(text: str | Iterable[str] | None) -> frozenset[str] | None:
    """The communities named (comma separated slugs), or None for the whole street."""
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise PartitionError("no community named")
    bad = [n for n in names if n not in COMMUNITIES]
    if bad:
        raise PartitionError(f"unknown communit{'y' if len(bad) == 1 else 'ies'} {', '.join(bad)}; "
                             f"the communities are {', '.join(COMMUNITIES)}")
    chosen = frozenset(names)
    return None if chosen == frozenset(COMMUNITIES) else chosen


def suffix(communities: frozenset[str] | None) -> str:
    """'' for the whole street, else '-a-b' (sorted slugs): names the partition's session and heartbeat."""
    return "" if communities is None else "-" + "-".join(sorted(communities))


class PartitionRegistry:
    """A RegistryWatcher showing only the partition's devices (the filtered copy made once per reload)."""

    def __init__(self, watcher: RegistryWatcher, communities: frozenset[str]) -> None:
        self.watcher = watcher
        self.communities = communities
        self._src: Registry | None = None
        self._view = Registry({})

    def current(self) -> Registry:
        src = self.watcher.current()
        if src is not self._src:
            self._view = Registry(only(src, self.communities), src.path, src.mtime_ns, src.size)
            self._src = src
        return self._view

    def refresh(self, force: bool = False) -> bool:
        return self.watcher.refresh(force)

    def __getattr__(self, name: str) -> Any:  # path, poll_s, reload_count
        return getattr(self.watcher, name)


def only(devices: Mapping[str, Device], communities: frozenset[str]) -> dict[str, Device]:
    return {k: d for k, d in devices.items() if d.community in communities}


def place_communities(registry: Mapping[str, Device]) -> dict[str, str]:
    """Subject id (device, compound, building, community) -> its community."""
    out: dict[str, str] = {c: c for c in COMMUNITIES}
    for d in registry.values():
        out[d.device_id] = d.community
        out.setdefault(d.compound_id, d.community)
        b = d.extra.get("building_id")
        if b:
            out.setdefault(str(b), d.community)
    return out


class PartitionStore:
    """The shared alert store as one partition's engine must see it (reads filtered, writes as they are:
    an engine only ever writes its own keys)."""

    def __init__(self, store: Any, communities: frozenset[str], registry: Callable[[], Mapping[str, Device]]) -> None:
        self._store = store
        self.communities = communities
        self._registry = registry  # the whole registry, now

    def open_alerts(self) -> dict[tuple[str, str], Alert]:
        return {k: a for k, a in self._store.open_alerts().items() if a.community in self.communities}

    def load_conditions(self) -> dict[tuple[str, str], dict[str, Any]]:
        where = place_communities(self._registry())
        mine = set(self.open_alerts())  # an open alert's condition is its community's, whatever its subject
        return {k: c for k, c in self._store.load_conditions().items()
                if k in mine or where.get(k[1]) in self.communities}

    def load_seen(self) -> dict[str, float]:
        devices = self._registry()
        return {k: t for k, t in self._store.load_seen().items()
                if (d := devices.get(k)) is not None and d.community in self.communities}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
