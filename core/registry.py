"""The device registry (the external contract's §2): load fast, watch for changes, write atomically.

Deliberately free of geopandas/shapely imports: ingest calls this on its hot path and at start-up.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from core.contract import Device
from core.geojson_io import write_feature_collection

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

# The bundled sample registry ships with the GIS layers in geodata/data/ (the contract puts it under geodata/).
# Named by path, not imported, so that the core imports nothing of the parts.
REGISTRY_FILE_NAME = "devices.geojson"
BUNDLED_REGISTRY = Path(__file__).resolve().parent.parent / "geodata" / "data" / REGISTRY_FILE_NAME

CORE_PROPERTIES: tuple[str, ...] = ("device_id", "kind", "community", "compound_id", "interval_s")
_CORE = frozenset(CORE_PROPERTIES)


class RegistryError(ValueError):
    """The registry file is unreadable or malformed."""


def bundled_registry_path() -> Path:
    return BUNDLED_REGISTRY


def ensure_registry(settings: Settings) -> Path:
    """Make sure the effective registry exists, seeding it from the bundled sample (atomically)."""
    path = settings.registry_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.seed")  # threads of one process too
        shutil.copyfile(bundled_registry_path(), tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        # link() never overwrites: if another process won the race, keep theirs (the same sample).
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # filesystems without hard links
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def system_registry(settings: Settings) -> Registry:
    """The registry the running system uses (seeded from the bundled sample if missing)."""
    return load_registry(ensure_registry(settings))


class Registry(Mapping[str, Device]):
    """An immutable snapshot: device_id -> Device, plus where and when it was read."""

    __slots__ = ("devices", "loaded_at", "mtime_ns", "path", "size")

    def __init__(self, devices: dict[str, Device], path: Path | None = None, mtime_ns: int = 0, size: int = 0):
        self.devices: Mapping[str, Device] = devices
        self.path = path
        self.mtime_ns = mtime_ns
        self.size = size
        self.loaded_at = time.time()

    @property
    def version(self) -> str:
        """Changes whenever the file does (mtime and size); '0:0' for an empty/missing registry."""
        return f"{self.mtime_ns}:{self.size}"

    def __getitem__(self, device_id: str) -> Device:
        return self.devices[device_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.devices

    def __repr__(self) -> str:
        return f"Registry({len(self.devices)} devices, path={self.path}, version={self.version})"


def device_from_feature(feat: Any, where: str) -> Device:
    """Build a Device from one registry feature; RegistryError names `where` on any problem."""
    try:
        extra = dict(feat["properties"])
        did = extra.pop("device_id")
        kind = extra.pop("kind")
        comm = extra.pop("community")
        cid = extra.pop("compound_id")
        interval = float(extra.pop("interval_s"))
        coords = feat["geometry"]["coordinates"]
        lon = float(coords[0])
        lat = float(coords[1])
        problem = None
        if not (isinstance(did, str) and isinstance(cid, str) and math.isfinite(lon + lat + interval)):
            problem = "bad device_id, compound_id, coordinates or interval_s"
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        problem = f"not a registry device ({type(exc).__name__}: {exc})"
    if problem:
        raise RegistryError(f"{where}: {problem}")
    return Device(did, kind, comm, cid, interval, lon, lat, extra)


def parse_registry(data: bytes, source: str = "registry") -> dict[str, Device]:
    # Building ~10^5 objects makes the cyclic GC run again and again for nothing (they are acyclic):
    # pausing it more than halves the load time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{source}: not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            raise RegistryError(f"{source}: not a GeoJSON FeatureCollection")
        features = doc.get("features")
        if not isinstance(features, list):
            raise RegistryError(f"{source}: FeatureCollection without a features array")
        devices: dict[str, Device] = {}
        i = 0
        try:  # the hot loop: device_from_feature inlined for speed
            for i, feat in enumerate(features):
                # The parsed properties dict becomes Device.extra in place (no copy), and the rest of
                # the feature is dropped as we go: this roughly halves peak memory for big registries.
                features[i] = None
                extra = feat["properties"]
                did = extra.pop("device_id")
                coords = feat["geometry"]["coordinates"]
                kind, comm, cid = extra.pop("kind"), extra.pop("community"), extra.pop("compound_id")
                interval = float(extra.pop("interval_s"))
                dev = Device(did, kind, comm, cid, interval, float(coords[0]), float(coords[1]), extra)
                if not (did.__class__ is str and cid.__class__ is str):
                    raise TypeError("device_id and compound_id must be strings")
                devices[did] = dev
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise RegistryError(f"{source}: features[{i}]: not a registry device ({why})") from None
        for dev in devices.values():  # NaN/inf coordinates would poison every distance downstream
            if not math.isfinite(dev.lon + dev.lat + dev.interval_s):
                raise RegistryError(f"{source}: device {dev.device_id}: non-finite coordinates or interval_s")
        return devices
    finally:
        if enabled:
            gc.enable()


def load_registry(path: Path) -> Registry:
    """Read a registry file with orjson, no geopandas (about 0.5 s for 100,000 devices on 2 cores)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except OSError as exc:
        raise RegistryError(f"{path}: {exc.strerror or exc}") from None
    return Registry(parse_registry(data, str(path)), path, st.st_mtime_ns, st.st_size)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RegistryWatcher:
    """Hands out the current Registry, re-reading the file when its mtime/size/inode changes.

    `current()` is cheap and safe from any thread: at most one `stat` per `poll_s`, and a reload swaps
    a single reference (readers never see a half-built registry). A file that fails to parse is logged
    and the previous registry kept, so a bad hand edit cannot empty a running system.
    """

    def __init__(self, path: Path, poll_s: float = 2.0) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._sig: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._registry = Registry({}, self.path)
        self.reload_count = 0
        self.refresh(force=True)

    def current(self) -> Registry:
        if time.monotonic() >= self._next_check:
            self.refresh()
        return self._registry

    def refresh(self, force: bool = False) -> bool:
        """Check the file now; True if a new registry was loaded."""
        # Another thread already checking: use what we have rather than block a message callback.
        if not self._lock.acquire(blocking=force):
            return False
        try:
            self._next_check = time.monotonic() + self.poll_s
            sig = _signature(self.path)
            if sig == self._sig and not force:
                return False
            self._sig = sig
            if sig is None:
                log.warning("device registry %s does not exist; no device is known", self.path)
                self._registry = Registry({}, self.path)
                return True
            try:
                reg = load_registry(self.path)
            except RegistryError as exc:
                log.error("device registry not reloaded, keeping %d devices: %s", len(self._registry), exc)
                return False
            self._registry = reg
            self.reload_count += 1
            log.info("device registry loaded: %d devices (version %s)", len(reg), reg.version)
            return True
        finally:
            self._lock.release()


def feature_from_device(dev: Device) -> dict[str, Any]:
    props: dict[str, Any] = {
        "device_id": dev.device_id,
        "kind": dev.kind,
        "community": dev.community,
        "compound_id": dev.compound_id,
        "interval_s": int(dev.interval_s) if float(dev.interval_s).is_integer() else dev.interval_s,
    }
    props.update((k, v) for k, v in dev.extra.items() if k not in _CORE)
    return {
        "type": "Feature",
        "properties": props,
        "geometry": {"type": "Point", "coordinates": [dev.lon, dev.lat]},
    }


def write_registry(path: Path, devices: Mapping[str, Device] | list[Device]) -> None:
    """Write a registry file atomically (temp file + fsync + os.replace)."""
    items = devices.values() if isinstance(devices, Mapping) else devices
    write_feature_collection(Path(path), (feature_from_device(d) for d in items), name="devices")
