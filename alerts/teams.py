"""The teams an operator dispatches alerts to (派单): 物业, 燃气公司, 供水公司, 供电所, 网格员, 派出所.

Read from `SC_DISPATCH_TEAMS_FILE` (default: the bundled `alerts/teams.yaml`). A file with an error
is refused as a whole with its file, line and reason (`TeamsError`); whoever loads it keeps the teams
it had. Line numbers come from the YAML node tree, so the reason points at the offending entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.configfile import ConfigError, Watched
from core.contract import COMMUNITIES

BUNDLED_TEAMS = Path(__file__).with_name("teams.yaml")
TEAM_TYPES: tuple[str, ...] = ("物业", "燃气公司", "供水公司", "供电所", "网格员", "派出所")
CONTACT_FIELDS: tuple[str, ...] = ("phone", "wecom_mobile", "dingtalk_mobile", "email")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TeamsError(ConfigError):
    """A teams file that cannot be used: `file:line: reason`."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(path, [(line, reason)])
        self.path, self.line, self.reason = path, line, reason  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    name: str
    contacts: dict[str, str]  # phone / wecom_mobile / dingtalk_mobile / email

    def as_json(self) -> dict[str, Any]:
        return {"id": self.member_id, "name": self.name, **self.contacts}


@dataclass(frozen=True, slots=True)
class Team:
    team_id: str
    name: str
    type: str
    communities: tuple[str, ...]  # empty: serves every community
    members: tuple[Member, ...]

    def serves(self, community: str | None) -> bool:
        return not self.communities or community in self.communities

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.member_id == member_id), None)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.team_id, "name": self.name, "type": self.type, "communities": list(self.communities),
                "members": [m.as_json() for m in self.members]}


@dataclass(frozen=True)
class Teams:
    teams: dict[str, Team]
    source: str

    def get(self, team_id: str) -> Team | None:
        return self.teams.get(team_id)

    def as_json(self) -> list[dict[str, Any]]:
        return [t.as_json() for t in self.teams.values()]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(path: Path, node: yaml.Node, what: str) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise TeamsError(path, _line(node), f"{what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for k, v in node.value:
        key = str(k.value)
        if key in out:
            raise TeamsError(path, _line(k), f"{what}: {key!r} given twice")
        out[key] = v
    return out


def _text(path: Path, node: yaml.Node | None, what: str, parent: yaml.Node, *, required: bool = True) -> str:
    if node is None:
        if required:
            raise TeamsError(path, _line(parent), f"{what} is missing")
        return ""
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise TeamsError(path, _line(node), f"{what} must be non-empty text")
    return str(node.value).strip()


def _member(path: Path, node: yaml.Node, team_id: str, seen: set[str]) -> Member:
    m = _mapping(path, node, f"a member of team {team_id!r}")
    unknown = sorted(set(m) - {"id", "name", *CONTACT_FIELDS})
    if unknown:
        raise TeamsError(path, _line(node), f"unknown member field(s) {', '.join(unknown)}")
    mid = _text(path, m.get("id"), "member id", node)
    if not ID_RE.match(mid):
        raise TeamsError(path, _line(m["id"]), f"member id {mid!r}: use letters, digits, '.', '_' or '-'")
    if mid in seen:
        raise TeamsError(path, _line(m["id"]), f"member id {mid!r} is used twice")
    seen.add(mid)
    name = _text(path, m.get("name"), f"name of member {mid!r}", node)
    contacts = {f: _text(path, m[f], f"{f} of member {mid!r}", node) for f in CONTACT_FIELDS if f in m}
    if not contacts:
        raise TeamsError(path, _line(node), f"member {mid!r} has no way to reach them "
                                            f"(give one of {', '.join(CONTACT_FIELDS)})")
    return Member(mid, name, contacts)


def parse_teams(text: str, path: Path) -> Teams:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TeamsError(path, (mark.line + 1) if mark else 1, f"not valid YAML: {getattr(exc, 'problem', exc)}") \
            from None
    if root is None:
        raise TeamsError(path, 1, "the file is empty: expected `teams:` with a list of teams")
    top = _mapping(path, root, "the file")
    if "teams" not in top:
        raise TeamsError(path, _line(root), "`teams:` is missing")
    seq = top["teams"]
    if not isinstance(seq, yaml.SequenceNode) or not seq.value:
        raise TeamsError(path, _line(seq), "`teams` must be a non-empty list")
    teams: dict[str, Team] = {}
    member_ids: set[str] = set()
    for node in seq.value:
        t = _mapping(path, node, "a team")
        unknown = sorted(set(t) - {"id", "name", "type", "communities", "members"})
        if unknown:
            raise TeamsError(path, _line(node), f"unknown team field(s) {', '.join(unknown)}")
        tid = _text(path, t.get("id"), "team id", node)
        if not ID_RE.match(tid):
            raise TeamsError(path, _line(t["id"]), f"team id {tid!r}: use letters, digits, '.', '_' or '-'")
        if tid in teams:
            raise TeamsError(path, _line(t["id"]), f"team id {tid!r} is used twice")
        name = _text(path, t.get("name"), f"name of team {tid!r}", node)
        typ = _text(path, t.get("type"), f"type of team {tid!r}", node)
        if typ not in TEAM_TYPES:
            raise TeamsError(path, _line(t["type"]),
                             f"team {tid!r}: type {typ!r} is not one of {'、'.join(TEAM_TYPES)}")
        comms: list[str] = []
        if "communities" in t:
            cn = t["communities"]
            if not isinstance(cn, yaml.SequenceNode):
                raise TeamsError(path, _line(cn), f"team {tid!r}: communities must be a list")
            for c in cn.value:
                if not isinstance(c, yaml.ScalarNode) or c.value not in COMMUNITIES:
                    raise TeamsError(path, _line(c), f"team {tid!r}: unknown community {getattr(c, 'value', c)!r} "
                                                     f"(use {', '.join(COMMUNITIES)})")
                comms.append(str(c.value))
        mn = t.get("members")
        if not isinstance(mn, yaml.SequenceNode) or not mn.value:
            raise TeamsError(path, _line(mn if mn is not None else node), f"team {tid!r} needs a list of members")
        members = tuple(_member(path, m, tid, member_ids) for m in mn.value)
        teams[tid] = Team(tid, name, typ, tuple(comms), members)
    return Teams(teams, str(path))


def teams_path(teams_file: str | None) -> Path:
    return Path(teams_file).resolve() if teams_file else BUNDLED_TEAMS


def load_teams(teams_file: str | None = None) -> Teams:
    """The teams of `SC_DISPATCH_TEAMS_FILE` (or the bundled sample); TeamsError when it is bad."""
    path = teams_path(teams_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TeamsError(path, 0, f"cannot read the teams file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TeamsError(path, 0, "not UTF-8 text") from None
    return parse_teams(text, path)


def TeamsWatcher(teams_file: str | None) -> Watched:
    """The current teams, re-read when the file changes (checked at every call); a bad edit is
    reported in `.error` and the last good teams stay in force, as for the roster and the rules."""
    return Watched(teams_path(teams_file), lambda _p: load_teams(teams_file), poll_s=0.0)
