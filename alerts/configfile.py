"""Hand-edited YAML files (roster, channels) read with the line of every value, so that a mistake
is refused as `file:line: reason` and the running configuration stays in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file is refused: every problem, each as `file:line: reason`."""

    def __init__(self, path: Path | str, problems: list[tuple[int, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}:{line}: {reason}" for line, reason in problems))


class LineDict(dict[str, Any]):
    line: int = 0
    lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        if not isinstance(key, str | int | float | bool) or key is None:
            raise yaml.MarkedYAMLError(None, None, f"unusable key {key!r}", k_node.start_mark)
        key = str(key)
        if key in out:
            raise yaml.MarkedYAMLError(None, None, f"duplicate key {key!r}", k_node.start_mark)
        out[key] = loader.construct_object(v_node, deep=True)
        out.lines[key] = k_node.start_mark.line + 1  # where the entry begins (its key)
    return out


def _seq(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [n.start_mark.line + 1 for n in node.value]
    return out


def _timestamp(loader: _Loader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))  # dates stay text: checked (with their line) by the parser


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)  # type: ignore[arg-type]
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)  # type: ignore[arg-type]
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)  # type: ignore[arg-type]


def load_yaml(path: Path) -> LineDict:
    """The file's top-level mapping, every mapping a LineDict and every list a LineList."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [(0, f"cannot read: {exc}")]) from None
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.context_mark or exc.problem_mark  # where the construct began, e.g. the unfinished key
        line = mark.line + 1 if mark else 0
        raise ConfigError(path, [(line, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise ConfigError(path, [(0, f"not valid YAML: {exc}")]) from None
    if doc is None:
        doc = LineDict()
        doc.line, doc.lines = 1, {}
    if not isinstance(doc, LineDict):
        raise ConfigError(path, [(1, "the file must be a mapping (key: value)")])
    return doc


def line_of(container: Any, key: str | int) -> int:
    """The line of `container[key]`, else of the container, else 0."""
    lines = getattr(container, "lines", None)
    try:
        if isinstance(lines, dict) and key in lines:
            return int(lines[key])
        if isinstance(lines, list) and isinstance(key, int):
            return int(lines[key])
    except (IndexError, KeyError):
        pass
    return int(getattr(container, "line", 0))


class Watched:
    """A configuration file re-read when it changes; a bad edit is logged and the last good one kept."""

    def __init__(self, path: Path, parse: Any, poll_s: float = 2.0) -> None:
        import time

        self.path = path
        self._parse = parse
        self.poll_s = poll_s
        self._clock = time.monotonic
        self._sig = self._signature()
        self.value = parse(path)  # a bad file at start is refused: ConfigError propagates
        self.error: str | None = None
        self._next = self._clock() + poll_s

    def _signature(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> Any:
        import logging

        if self._clock() < self._next:
            return self.value
        self._next = self._clock() + self.poll_s
        sig = self._signature()
        if sig == self._sig:
            return self.value
        self._sig = sig
        try:
            self.value = self._parse(self.path)
            self.error = None
            logging.getLogger(__name__).info("reloaded %s", self.path)
        except ConfigError as exc:
            self.error = str(exc)
            logging.getLogger(__name__).error("refused %s, keeping the running one:\n%s", self.path, exc)
        return self.value
