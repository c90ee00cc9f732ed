"""The import graph is the one the README draws, and each shared fact has one home.

- Every package imports only along GRAPH below: `core/` imports nothing of the parts (ingest,
  alerts, dashboard, geodata, simulators, security, bridges) nor the launcher (smartcommunity); no part
  imports the launcher. Module- and function-level imports and `importlib.import_module("...")` /
  `__import__("...")` strings all count.
- The severity colours, the UTC+8 offset, an ISO-8601 formatter and a registry loader are each
  defined once, in core/severity.py, core/timebase.py and core/registry.py, across the source tree
  (Python, JavaScript, CSS). Docstrings and comments may mention them; code may not restate them.
  Tests restate colours and formats on purpose, to check them independently; only a restated UTC+8
  shift is looked for in tests (two clocks in one test fail at some hour of the day).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.severity import COLOUR

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("ingest", "alerts", "dashboard", "geodata", "simulators", "security", "bridges")
LAUNCHER = "smartcommunity"
SOURCE_DIRS = ("core", *PARTS, LAUNCHER, "bench", "scripts")
# The whole import graph between packages, as the README's architecture section draws it: each
# package may import itself and what is listed here, nothing else. A new edge is a design decision:
# add it here and to the README together. (bench/ measures everything and may import anything.)
GRAPH = {
    "core": set(),
    "ingest": {"core"},
    "security": {"core", "ingest"},              # InfluxDB accounts set the retention policies ingest owns
    "geodata": {"core", "security"},             # device verbs: a new device gets its broker account
    "alerts": {"core", "ingest", "geodata"},     # the fast MQTT client, the records ingest hands on; places
    "simulators": {"core", "alerts"},            # `eval` runs the real engine over the incident library
    "dashboard": {"core", "ingest", "geodata", "alerts", "bridges"},  # bridges: their /metrics names
    "bridges": {"core", "ingest"},               # ingest's dead-letter store and per-device budget
    LAUNCHER: {"core", *PARTS},
}
WEB = (".js", ".css", ".html")


def source_files(suffixes: tuple[str, ...]) -> list[Path]:
    out = [p for d in SOURCE_DIRS if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*") if p.suffix in suffixes]
    return sorted(p for p in out if "__pycache__" not in p.parts)


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


# ---- the import graph -------------------------------------------------------------------------

def imported(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in `source`, wherever it stands, and import strings."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def violations(files: list[Path], forbidden: set[str]) -> list[str]:
    return [f"{rel(p)}:{line} imports {mod}" for p in files for line, mod in imported(p.read_text())
            if mod.split(".")[0] in forbidden]


def test_the_import_scanner_sees_every_form() -> None:
    src = ("import dashboard.app\nfrom alerts import engine\n"
           "def f():\n    from geodata.spatial import x\n    import importlib\n"
           "    importlib.import_module('simulators.sim')\n    __import__('smartcommunity.cli')\n"
           "from . import sibling\nimport json\n")
    assert {m for _, m in imported(src)} == {"dashboard.app", "alerts", "geodata.spatial", "importlib",
                                             "simulators.sim", "smartcommunity.cli", "json"}


def test_core_imports_no_part_and_not_the_launcher() -> None:
    files = [p for p in source_files((".py",)) if rel(p).startswith("core/")]
    assert len(files) > 10
    assert violations(files, {*PARTS, LAUNCHER}) == []


def test_every_package_imports_only_along_the_graph() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(GRAPH), "a package without its place in GRAPH (and the README), or a stale one"
    bad = []
    for pkg, allowed in GRAPH.items():
        files = [p for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts]
        bad += [v for v in violations(files, set(GRAPH) - allowed - {pkg})]
    assert bad == []


def test_no_part_imports_the_launcher() -> None:
    files = [p for p in source_files((".py",)) if rel(p).split("/")[0] in PARTS]
    assert len(files) > 40
    assert violations(files, {LAUNCHER}) == []


# ---- one home per fact ------------------------------------------------------------------------

def docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def code_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String constants that are code, not docstrings (f-string parts included)."""
    docs = docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def web_code(text: str) -> str:
    """JavaScript/CSS without its comments."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"(?m)(^|\s)//.*$", r"\1", text)


def hex_to_rgb(h: str) -> str:
    r, g, b = (int(h[i:i + 2], 16) for i in (1, 3, 5))
    return rf"\b{r}\s*,\s*{g}\s*,\s*{b}\b"


COLOUR_RE = re.compile("|".join([*(re.escape(c) for c in COLOUR.values()), *(hex_to_rgb(c) for c in COLOUR.values())]),
                       re.I)
OFFSET_RE = re.compile(r"Asia/Shanghai|[+]08:?00\b|\b28800(000)?\b|\b8\s*\*\s*3600\b|\b8\s*\*\s*60\s*\*\s*60\b")
ISO_RE = re.compile(r"%Y-%m-%dT|toISOString\s*\(")
REGISTRY_FN = re.compile(r"^_?(load|parse|read)_(registry|devices)$")


def _is_num(node: ast.AST, v: int) -> bool:
    return isinstance(node, ast.Constant) and node.value == v and not isinstance(node.value, bool)


def python_facts(tree: ast.AST) -> Iterator[tuple[str, int, str]]:
    """(fact, line, what) for every statement of a fact in Python code."""
    for line, s in code_strings(tree):
        if COLOUR_RE.search(s):
            yield "severity colour", line, s
        if OFFSET_RE.search(s):
            yield "UTC+8 offset", line, s
        if ISO_RE.search(s):
            yield "ISO-8601 formatter", line, s
        if s.endswith("devices.geojson"):
            yield "registry loader", line, s
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and (
                (_is_num(node.left, 8) and _is_num(node.right, 3600))
                or (_is_num(node.left, 3600) and _is_num(node.right, 8))):
            yield "UTC+8 offset", node.lineno, "8 * 3600"
        elif isinstance(node, ast.Constant) and node.value in (28800, 28_800_000) \
                and not isinstance(node.value, bool):
            yield "UTC+8 offset", node.lineno, str(node.value)
        elif isinstance(node, ast.keyword) and node.arg == "hours" and _is_num(node.value, 8):
            yield "UTC+8 offset", node.value.lineno, "hours=8"
        elif isinstance(node, ast.Attribute) and node.attr == "isoformat":
            yield "ISO-8601 formatter", node.lineno, ".isoformat()"
        elif isinstance(node, ast.FunctionDef) and REGISTRY_FN.match(node.name):
            yield "registry loader", node.lineno, f"def {node.name}"


def web_facts(text: str) -> Iterator[tuple[str, int, str]]:
    code = web_code(text)
    for fact, rx in (("severity colour", COLOUR_RE), ("UTC+8 offset", OFFSET_RE), ("ISO-8601 formatter", ISO_RE)):
        for m in rx.finditer(code):
            yield fact, code.count("\n", 0, m.start()) + 1, m.group(0)


HOME = {"severity colour": "core/severity.py", "UTC+8 offset": "core/timebase.py",
        "ISO-8601 formatter": "core/timebase.py", "registry loader": "core/registry.py"}


def all_facts() -> list[tuple[str, str, int, str]]:
    out = []
    for p in source_files((".py",)):
        out += [(fact, rel(p), line, what) for fact, line, what in python_facts(ast.parse(p.read_text()))]
    for p in source_files(WEB):
        out += [(fact, rel(p), line, what) for fact, line, what in web_facts(p.read_text())]
    return out


def test_the_fact_scanner_sees_restatements() -> None:
    py = ('"""Docstring: Asia/Shanghai, #ff3b30, %Y-%m-%dT are fine here."""\n'
          "RED = '#FF3B30'\nOFF = 8 * 3600\nTZ = timezone(timedelta(hours=8))\nx = d.isoformat()\n"
          "y = t.strftime('%Y-%m-%dT%H')\ndef load_registry(p): ...\nz = 'Asia/Shanghai'\nw = 28800\n")
    found = [(f, line) for f, line, _ in python_facts(ast.parse(py))]
    assert found.count(("severity colour", 2)) == 1
    assert {f for f, line in found if line == 1} == set()
    assert {("UTC+8 offset", 3), ("UTC+8 offset", 4), ("ISO-8601 formatter", 5), ("ISO-8601 formatter", 6),
            ("registry loader", 7), ("UTC+8 offset", 8), ("UTC+8 offset", 9)} <= set(found)
    css = "/* #ff3b30 in a comment */ .a { color: #ff3b30; box-shadow: rgba(255, 59, 48, .5); }\n"
    js = "// 'Asia/Shanghai' in a comment\nvar tz = 'Asia/Shanghai'; var s = d.toISOString();\n"
    assert [f for f, _, _ in web_facts(css)] == ["severity colour", "severity colour"]
    assert sorted(f for f, _, _ in web_facts(js)) == ["ISO-8601 formatter", "UTC+8 offset"]


@pytest.mark.parametrize("fact", sorted(HOME))
def test_defined_once(fact: str) -> None:
    found = [(path, line, what) for f, path, line, what in all_facts() if f == fact]
    assert {path for path, _, _ in found} == {HOME[fact]}, [x for x in found if x[0] != HOME[fact]]


def test_css_variables_cover_what_the_style_sheets_use() -> None:
    from core.severity import css_variables

    defined = set(re.findall(r"(--sev-[a-z]+):", css_variables()))
    used = {v for p in source_files((".css",)) for v in re.findall(r"var\((--sev-[a-z]+)\)", p.read_text())}
    assert used and used <= defined, used - defined


def test_tests_take_the_beijing_offset_from_timebase() -> None:
    """A test that shifts a clock by UTC+8 itself compares two zones (a date in UTC against one in
    Beijing fails every evening from 16:00 UTC): tests import the offset from core/timebase.py too.
    A fixed timestamp written with its offset (`...T03:12:00+08:00`) is test data, not a clock."""
    me = Path(__file__).resolve()
    files = sorted(p for p in (ROOT / "tests").rglob("*.py") if p.resolve() != me and "__pycache__" not in p.parts)
    assert len(files) > 40
    found = [f"{rel(p)}:{line} {what}" for p in files for fact, line, what in python_facts(ast.parse(p.read_text()))
             if fact == "UTC+8 offset" and not re.match(r"\d{4}-\d\d-\d\dT", what)]
    assert found == []


def label_tables(tree: ast.AST, rule_names: set[str]) -> Iterator[tuple[str, int]]:
    """Dict literals that word rules or kinds ({"gas_lel_high": "...", ...} / {"gas": "燃气", ...})."""
    from core.contract import KINDS

    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        words = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        if not any(re.search(r"[\u4e00-\u9fff]", w) for w in words):
            continue  # a table of facts (a rule's metric, a pattern's place), not of words
        if len(keys & rule_names) >= 2:
            yield "rule words", node.lineno
        elif set(KINDS) <= keys:
            yield "kind words", node.lineno


def test_rule_and_kind_words_have_one_home() -> None:
    """A rule's words live in alerts/rules.yaml (title, description), a kind's in core/contract.py."""
    from alerts.rules import load_rules

    names = {r.name for r in load_rules()}
    sample = 'A = {"gas_lel_high": "燃气", "water_leak": "漏水"}\nB = {"gas": "燃气", "water": "水", "power": "电", ' \
             '"camera": "摄像"}\n'
    assert sorted(label_tables(ast.parse(sample), names)) == [("kind words", 2), ("rule words", 1)]
    found = [(what, rel(p)) for p in source_files((".py",))
             for what, _ in label_tables(ast.parse(p.read_text()), names)]
    # Two facts with one home: the label staff read (KIND_LABEL) and the words the street's Excel
    # ledger uses for a kind (KIND_LEDGER_NAMES, contract §6: 燃气/水/电/摄像头).
    assert found == [("kind words", "core/contract.py"), ("kind words", "core/contract.py")], found
