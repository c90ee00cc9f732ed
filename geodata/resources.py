"""Emergency resources (应急资源): the one home for their categories, Chinese words and which alerts need them.

The `resources` layer holds points: shut-off valves (gas and water, each naming what it closes),
hydrants, repair / emergency teams (with what they serve), shelters (应急避难场所) and AEDs. A gas
alert has to say where the valve that closes its compound is and how far the gas team is; this module
says which category answers which alert kind, and `geodata.spatial.SpatialIndex.nearest_resources`
finds them.

Layer columns (besides a Point geometry): `resource_id`, `category` (a key of CATEGORIES), `name`,
`community`, `closes` (valves: compound / building ids, comma separated), `serves` (teams: contract
kinds, comma separated); optional `phone`, `contact`, `capacity` (shelters, persons).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.contract import KINDS


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    label: str  # Chinese word on the map, the alert page and the message
    id_prefix: str  # of the sample's ids, e.g. GV-YL-01
    needs_closes: bool = False  # a valve must say what it closes
    needs_serves: bool = False  # a team must say what it serves


CATEGORIES: dict[str, Category] = {c.key: c for c in (
    Category("gas_valve", "燃气阀门", "GV", needs_closes=True),
    Category("water_valve", "供水阀门", "WV", needs_closes=True),
    Category("hydrant", "消火栓", "H"),
    Category("team", "抢修队", "T", needs_serves=True),
    Category("shelter", "应急避难场所", "SH"),
    Category("aed", "AED", "AED"),
)}  # fmt: skip

# A team is named by what it serves: 燃气抢修队, 供水抢修队, 供电抢修队.
SERVES_LABEL: dict[str, str] = {"gas": "燃气", "water": "供水", "power": "供电"}


@dataclass(frozen=True, slots=True)
class Need:
    """One "nearest …" question asked around an alert: a category (for teams: serving one kind)."""

    key: str  # the key of the answer in an alert's `nearby["resources"]`
    category: str
    serves: str | None
    label: str
    kinds: frozenset[str]  # alert kinds whose message names the answer
    named: bool = False  # the message names it too: a valve (what it closes), a shelter (where to go)


# Ordered as a dispatcher acts: close the source, call who repairs it, then water, people, first aid.
# Gas: the valve and the gas team, a hydrant for a fire, a shelter to evacuate to (the 2021 艳湖
# explosion came minutes after a leak). Water: its valve and team. Power: its team, a hydrant,
# an AED (electric shock). Cameras need none.
NEEDS: tuple[Need, ...] = (
    Need("gas_valve", "gas_valve", None, "燃气阀门", frozenset({"gas"}), named=True),
    Need("gas_team", "team", "gas", "燃气抢修队", frozenset({"gas"})),
    Need("water_valve", "water_valve", None, "供水阀门", frozenset({"water"}), named=True),
    Need("water_team", "team", "water", "供水抢修队", frozenset({"water"})),
    Need("power_team", "team", "power", "供电抢修队", frozenset({"power"})),
    Need("hydrant", "hydrant", None, "消火栓", frozenset({"gas", "power"})),
    Need("shelter", "shelter", None, "应急避难场所", frozenset({"gas"}), named=True),
    Need("aed", "aed", None, "AED", frozenset({"power"}), named=True),
)
NEED_BY_KEY: dict[str, Need] = {n.key: n for n in NEEDS}


def needs_for(kind: str) -> tuple[Need, ...]:
    """The needs an alert of this device kind names in its message, in NEEDS order."""
    return tuple(n for n in NEEDS if kind in n.kinds)


def split_ids(value: Any) -> list[str]:
    """'YL-01, YL-01-B03' (or a list) -> ['YL-01', 'YL-01-B03']; None / NaN / '' -> []."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    return [s for s in (str(p).strip() for p in parts) if s]


def category_label(category: str, serves: Any = None) -> str:
    """燃气阀门, 消火栓, …; a team by what it serves (燃气抢修队, 供水/供电抢修队)."""
    cat = CATEGORIES.get(category)
    if cat is None:
        return category
    if cat.needs_serves:
        words = "/".join(SERVES_LABEL.get(k, k) for k in split_ids(serves))
        return f"{words}{cat.label}" if words else cat.label
    return cat.label


def row_problems(category: Any, closes: Any, serves: Any, known_places: set[str] | None = None) -> list[str]:
    """What is wrong with one resource row (empty when nothing); `known_places` checks `closes` ids."""
    cat = CATEGORIES.get(str(category)) if isinstance(category, str) else None
    if cat is None:
        return [f"category {category!r} is not one of {', '.join(CATEGORIES)}"]
    out: list[str] = []
    ids = split_ids(closes)
    if cat.needs_closes and not ids:
        out.append(f"{cat.label} ({cat.key}) needs `closes`: the compound / building ids it shuts off")
    if known_places is not None:
        out += [f"closes {i!r}: no such compound or building" for i in ids if i not in known_places]
    kinds = split_ids(serves)
    if cat.needs_serves and not kinds:
        out.append(f"{cat.label} ({cat.key}) needs `serves`: one or more of {', '.join(SERVES_LABEL)}")
    out += [f"serves {k!r}: not a device kind of {', '.join(KINDS)}" for k in kinds if k not in KINDS]
    return out
