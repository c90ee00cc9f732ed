"""Shared fixtures: a real Mosquitto and a real InfluxDB 1.x on free loopback ports.

They are started through the project's own service code (smartcommunity.services), so the
tests also exercise what `smartcommunity up` does.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from core.influx import InfluxClient
from core.settings import Settings, load_settings
from smartcommunity.services import RunningService, free_port, start_influxdb, start_mosquitto
from tests.pg import NoPostgres, RunningPostgres, start_postgres

CONTRACT_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"


MODULE_DASHBOARDS = {"live", "staffed"}  # tests/security/web: module-scoped LiveDashboard fixtures


class _GroupsHeld:
    """In a `--dist loadgroup` worker, every grouped test must carry its group in its id (that is how
    xdist keeps a group in one worker): a pytest/xdist pair that drops it spreads the browser tests
    over every worker without a word (pytest 9.2 with xdist 3.8 did), so this stops the run instead."""

    @pytest.hookimpl(trylast=True)  # after xdist's own hook has named the tests
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        lost = [item.nodeid for item in items
                if (mark := item.get_closest_marker("xdist_group")) and not item.nodeid.endswith("@" + mark.args[0])]
        if lost:
            why = (f"--dist loadgroup is not in effect for {len(lost)} tests (e.g. {lost[0]}): "
                   "this pytest and pytest-xdist do not work together; see pyproject.toml")
            print(f"\n{why}", file=sys.stderr)  # a worker's own error reaches the terminal only as xdist's assert
            raise pytest.UsageError(why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): tests that `make test` (pytest-xdist, --dist loadgroup) "
                            "runs in one worker, one after the other")
    config.pluginmanager.register(_GroupsHeld(), "sc-groups-held")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for the parallel run: every browser test in one worker (two Chromiums at once on a
    2-core machine doubled each browser test's time and timed some out: measured); each module whose
    dashboard is module-scoped in one worker, so that dashboard starts once. The browser group is the
    longest: it goes first, so it is handed out first."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)  # stable: order kept otherwise
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
        elif MODULE_DASHBOARDS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))


BROWSER_NICE = -10  # CFS weight about 9x a plain worker's (and an autogroup's): see pytest_runtest_setup
_reniced = False


def _autogroup(pid: int) -> str:
    """The process's scheduling group, or "" where the kernel keeps none (the file is missing or
    empty in some containers): then only the threads' nice is raised."""
    try:
        return next(iter(Path(f"/proc/{pid}/autogroup").read_text().split()), "")
    except OSError:
        return ""


def _renice_tree(pid: int, nice: int, mine: str, seen: set[int], groups: set[str]) -> None:
    """Every thread of a process and of its descendants (nice is per thread on Linux); and the
    scheduling group of each descendant that runs in a session of its own (Chromium does: with the
    kernel's autogroups, CPU is shared between sessions first, and a thread's nice counts only
    inside its own session). A process already raised is only searched for new children: the
    threads it starts later take their creator's nice."""
    fresh = pid not in seen
    seen.add(pid)
    group = _autogroup(pid) if fresh else ""
    if group and group != mine and group not in groups:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
            groups.add(group)
    for tid in os.listdir(f"/proc/{pid}/task"):
        if fresh:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                _renice_tree(int(child), nice, mine, seen, groups)


def _keep_reniced(pid: int) -> None:
    """Chromium is started anew by each test: its processes are found and raised as they come. The
    pytest session's own group is raised too: the dashboards the browser talks to serve from this
    worker's threads, and with the group at the servers' weight (InfluxDB, Mosquitto, PostgreSQL each
    run in a session of their own) the worker's raised threads still got a sixth of the machine."""
    mine, seen, groups = _autogroup(pid), set[int](), set[str]()
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(BROWSER_NICE))
    while True:
        with contextlib.suppress(OSError, ValueError):  # a process ending mid-walk; the next turn sees the rest
            _renice_tree(pid, BROWSER_NICE, mine, seen, groups)
        seen &= {int(p) for p in os.listdir("/proc") if p.isdigit()}  # a pid is reused once its process ends
        time.sleep(0.3)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The worker running the browser group is the suite's critical path (the group is longer than
    any other worker's share): it runs at a higher priority, with everything it starts (Chromium, the
    dashboards). Starved by three other workers and their servers on two cores, the browser group took
    1.9x its time alone (page-words walk 70 s in the suite, 31 s alone) and waits on pages timed out.
    Where raising priority is not allowed (not root), nothing changes."""
    global _reniced
    if _reniced or not item.get_closest_marker("browser") or os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    _reniced = True
    threading.Thread(target=_keep_reniced, args=(os.getpid(),), name="renice-browser", daemon=True).start()


def make_settings(data_dir: Path, **over: Any) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SC_")}
    return load_settings(env, data_dir=str(data_dir), **over)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[RunningService]:
    s = make_settings(services_dir, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    svc = start_mosquitto(s)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def influxd(services_dir: Path) -> Iterator[RunningService]:
    s = make_settings(services_dir, influx_url=f"http://127.0.0.1:{free_port()}")
    svc = start_influxdb(s)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[RunningPostgres]:
    """A PostgreSQL server for the session (tests/pg.py); the tests that need it skip where it cannot run."""
    try:
        server = start_postgres()
    except NoPostgres as exc:
        pytest.skip(f"no PostgreSQL for the store tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: RunningPostgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test: its URL, as SC_STORE_URL takes it."""
    name, url = postgres.fresh_database()
    yield url
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's alert store lives, once per backend: a SQLite file, then a PostgreSQL database
    (`open_store(store_url)` opens it; several opens share it, as processes on several hosts do)."""
    if request.param == "sqlite":
        return str(tmp_path / "alerts.sqlite")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(tmp_path: Path, broker: RunningService, influxd: RunningService) -> Settings:
    """Settings for one test: shared services, its own database, data dir and client ids."""
    tag = uuid.uuid4().hex[:8]
    return make_settings(
        tmp_path / "var",
        mqtt_url=f"mqtt://127.0.0.1:{broker.url.port}",
        influx_url=f"http://127.0.0.1:{influxd.url.port}",
        influx_db=f"test_{tag}",
        ingest_client_id=f"sc-ingest-{tag}",
        alerts_client_id=f"sc-alerts-{tag}",
        alert_holdoff_s=2.0,
        ingest_flush_ms=50,
        registry_poll_s=0.2,
    )


@pytest.fixture
def influx(settings: Settings) -> Iterator[InfluxClient]:
    client = InfluxClient(settings.influx_url, settings.influx_db)
    client.create_database()
    yield client
    client.close()


class Collector:
    """A real MQTT subscriber that records what arrives."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cv = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(settings.mqtt.host, settings.mqtt.port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._cv:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cv.notify_all()

    def wait_for(self, pred: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def json(self) -> list[dict[str, Any]]:
        return [orjson.loads(p) for _, p, _ in self.messages if p]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector(settings: Settings) -> Iterator[Callable[[str], Collector]]:
    made: list[Collector] = []

    def make(topic: str) -> Collector:
        c = Collector(settings, topic)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def start_ingest(settings: Settings) -> Iterator[Callable[..., Any]]:
    """Starts an in-process ingest on the test's broker: the alert engine gets only the records ingest
    accepted and hands on (ingest/forward.py), so a test of alerts from device messages needs one."""
    from ingest.service import Ingestor

    made: list[Ingestor] = []

    def start(s: Settings | None = None) -> Ingestor:
        ing = Ingestor(s or settings)
        ing.start()
        made.append(ing)
        assert wait_until(lambda: ing.mqtt_ok, 10), "ingest did not connect"
        return ing

    yield start
    for ing in made:
        ing.close()


@pytest.fixture
def publisher(settings: Settings) -> Iterator[mqtt.Client]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def clear_retained_alerts(settings: Settings, quiet_s: float = 0.5) -> int:
    """Clear the retained alert copies earlier tests left on the session's shared broker; returns how many.

    A test that reads the whole alert bus (the dashboard's live state) must start from an empty one."""
    topics: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"clr-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _c, _u, msg: topics.append(msg.topic) if msg.retain and msg.payload else None
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        client.subscribe("sc/alerts/#", qos=1)
        seen = -1
        while seen != len(topics):  # retained copies arrive in one burst after SUBACK
            seen = len(topics)
            time.sleep(quiet_s)
        for t in topics:
            client.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    return len(topics)


def wait_until(pred: Callable[[], Any], timeout: float = 10, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(every)


def feed(svc: Any, device: Any, metrics: dict[str, float | bool]) -> None:
    """One reading into a running alert service's inbox as ingest hands it on (a record it accepted),
    handled on the service's engine thread."""
    from core.validation import Telemetry
    from ingest.forward import encode, records_topic
    rec = Telemetry(device, int(time.time() * 1000), None, metrics)
    svc.inbox.put((records_topic(device.community), encode([rec])))


class RunningAlerts:
    """A real alert service (alerts/service.py) run on a thread: staff commands reach it."""

    def __init__(self, settings: Settings, broker: bool = True) -> None:
        from alerts.service import AlertService

        self.svc = AlertService(settings)
        self.broker = broker  # False: the test runs with no broker (commands work all the same)
        self.thread = threading.Thread(target=self.svc.run_forever, name="test-alerts", daemon=True)

    def __enter__(self) -> Any:
        from alerts.command import endpoint_path

        self.thread.start()
        path = endpoint_path(self.svc.settings.data_path)
        assert wait_until(path.exists, timeout=20), "the alert service did not start taking commands"
        if self.broker:
            assert self.svc.ready.wait(10), "the alert service did not reach the broker"
        return self.svc

    def __exit__(self, *exc: object) -> None:
        self.svc.stop()
        self.thread.join(20)


@pytest.fixture
def alert_service(settings: Settings) -> Iterator[Any]:
    """The alert service over the `settings` fixture's data dir, taking staff commands."""
    with RunningAlerts(settings) as svc:
        yield svc
