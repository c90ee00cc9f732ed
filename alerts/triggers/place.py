"""Place rules: most devices of one place (a compound, or a whole community) silent or offline at
once — one alert for the place, the devices' own silence folded under it (`share` of the devices
that have ever reported, at least `min_devices`). And `never_reported`: devices that have never
reported, one notice per community. Decided by the periodic scan over the liveness arrays
(alerts/liveness.py): a compound inside a community that is down is folded under the community's
alert, and a compound waits the fold window before it is raised, as the whole community may be
going down."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from alerts.triggers import Act, Finding, ScanView, Subject

if TYPE_CHECKING:
    from alerts.liveness import Liveness
    from alerts.rules import Rule

NAME = "place"
KEYS = frozenset({"place", "share", "min_devices", "what"})
PLACES = ("compound", "community")
WHATS = ("silent", "never_reported")
SHARE, MIN_DEVICES = 0.8, 3  # when a rule leaves them out


def validate(rule: Rule) -> str | None:
    if rule.place not in PLACES:
        return f"place must be one of {PLACES}"
    if rule.what not in WHATS:
        return f"what must be one of {WHATS}"
    if rule.what == "silent" and not (0 < (rule.share or 0) <= 1 and (rule.min_devices or 0) >= 1):
        return "a place silence rule needs 0 < share ≤ 1 and min_devices ≥ 1"
    return None


def _by_what(rules: Iterable[Rule]) -> dict[tuple[str | None, str | None], Rule]:
    return {(r.place, r.what): r for r in rules}


def place_of(rule: Rule) -> str:
    """What kind of place the rule's alert is about (its subject is that place's id)."""
    return rule.place or "compound"


def liveness(rules: list[Rule]) -> dict[str, float]:
    """When a compound / community counts as down (`Liveness.scan`'s keywords)."""
    by = _by_what(rules)
    out: dict[str, float] = {}
    c, m = by.get(("compound", "silent")), by.get(("community", "silent"))
    if c is not None:
        out.update(share=c.share or SHARE, min_devices=c.min_devices or MIN_DEVICES)
    if m is not None:
        out.update(community_share=m.share or SHARE, community_min=m.min_devices or MIN_DEVICES)
    return out


def subject(live: Liveness, place: str, i: int, place_id: str) -> Subject:
    """A place as an alert's subject, drawn at the mean position of (up to 500 of) its devices."""
    mask = (live.compound_of if place == "compound" else live.community_of) == i
    idx = np.nonzero(mask)[0]
    first = live.devices[int(idx[0])]
    lon = float(np.mean([live.devices[int(j)].lon for j in idx[:500]]))
    lat = float(np.mean([live.devices[int(j)].lat for j in idx[:500]]))
    return Subject(place_id, first.community, place_id if place == "compound" else "", "", "", lon, lat)


def scan(rules: list[Rule], view: ScanView) -> Iterable[Finding]:
    from alerts.message import place_label  # alerts.message reads rule titles: imported once rules are

    by = _by_what(rules)
    crule, mrule = by.get(("compound", "silent")), by.get(("community", "silent"))
    live, sc, now = view.live, view.scan, view.now
    names = {"compound": live.compounds, "community": live.communities}
    # The community first: a compound inside a community that is down is folded under it.
    for rule, down, (dn, tot) in ((mrule, sc.community_down, sc.community_counts),
                                  (crule, sc.compound_down, sc.compound_counts)):
        if rule is None:
            continue
        place = rule.place or "compound"
        for i, place_id in enumerate(names[place]):
            key = (rule.name, place_id)
            if down[i]:
                if place == "compound" and sc.community_down[live.compound_community[i]]:
                    parent = (mrule.name, live.communities[live.compound_community[i]]) if mrule else None
                    yield Finding(rule, place_id, Act.FOLD, parent=parent)
                    continue
                since = view.since(key)
                if place == "compound" and key not in view.open \
                        and now - (now if since is None else since) < view.fold_window_s:
                    yield Finding(rule, place_id, Act.WAIT)  # the whole community may be going down
                    continue
                msg = rule.render(value=int(dn[i]), place=place_label(place_id), n=int(dn[i]), total=int(tot[i]))
                yield Finding(rule, place_id, Act.RAISE, int(dn[i]), msg, rule.share,
                              place=subject(live, place, i, place_id))
            elif (key in view.open and view.settled) or (key not in view.open and key in view.conditions):
                yield Finding(rule, place_id, Act.CLEAR)
    nrule = by.get(("community", "never_reported"))
    if nrule is not None:
        nv, allm = sc.never_by_community
        for i, place_id in enumerate(live.communities):
            if nv[i] > 0:
                msg = nrule.render(value=int(nv[i]), place=place_label(place_id), n=int(nv[i]), total=int(allm[i]))
                yield Finding(nrule, place_id, Act.RAISE, int(nv[i]), msg,
                              place=subject(live, "community", i, place_id))
            elif (nrule.name, place_id) in view.open:
                yield Finding(nrule, place_id, Act.CLEAR)
