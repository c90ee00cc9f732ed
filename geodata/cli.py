"""Verbs `devices list|import|export|commissioning` and `geodata import|basemap|synth|layers`.

Handlers import their heavy modules lazily so `smartcommunity --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from core.contract import COMMUNITIES, KINDS
from core.settings import Settings

EXIT_BAD_INPUT = 2


def register(sub: Any) -> None:
    dev = sub.add_parser("devices", help="list or import devices of the registry")
    dsub = dev.add_subparsers(dest="devices_cmd", required=True, metavar="CMD")
    p = dsub.add_parser("list", help="print the effective device registry")
    p.add_argument("--json", action="store_true", help="JSON array (contract properties + lon, lat)")
    p.add_argument("--community", choices=sorted(COMMUNITIES), help="only this community")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.set_defaults(func=cmd_devices_list)
    p = dsub.add_parser("import", help="add or update devices from GeoJSON, CSV (lon,lat) or the Excel ledger "
                                       "(台账 .xlsx); all or nothing")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_devices_import)
    p = dsub.add_parser("export", help="write the registry as the street's Excel ledger (台账)")
    p.add_argument("--xlsx", type=Path, required=True, metavar="FILE")
    p.add_argument("--community", choices=sorted(COMMUNITIES), help="only this community")
    p.set_defaults(func=cmd_devices_export)
    p = dsub.add_parser("commissioning", help="per community and compound: registered, reported in 24 h, never "
                                              "reported, last seen, offline, low battery (设备验收)")
    p.add_argument("--xlsx", type=Path, metavar="FILE", help="also write the report as an Excel workbook")
    p.add_argument("--json", action="store_true", help="print JSON: compounds and devices")
    p.add_argument("--community", choices=sorted(COMMUNITIES), help="only this community")
    p.set_defaults(func=cmd_devices_commissioning)
    from security.cli import add_device_verbs

    add_device_verbs(dsub)  # devices provision | revoke (broker accounts, issue 12)

    geo = sub.add_parser("geodata", help="GIS layers: import, synthesise test registries, show sources")
    gsub = geo.add_subparsers(dest="geodata_cmd", required=True, metavar="CMD")
    from geodata.layer_import import add_arguments as add_layer_import_args

    p = gsub.add_parser("import", help="import a GIS layer (GeoJSON, Shapefile, GeoPackage, DXF, CSV lon/lat)")
    add_layer_import_args(p)
    p.set_defaults(func=cmd_geodata_import)
    p = gsub.add_parser("synth", help="write a large synthetic registry valid against the layers")
    p.add_argument("--devices", type=int, required=True, metavar="N")
    p.add_argument("--out", type=Path, help="default: <SC_DATA_DIR>/synth/devices-N.geojson")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_geodata_synth)
    p = gsub.add_parser("basemap", help="install the street's own offline basemap for the map: "
                          "a raster MBTiles or PMTiles, or a georeferenced orthophoto GeoTIFF (cut into tiles)")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_geodata_basemap)
    p = gsub.add_parser("layers", help="which file each layer comes from, and feature counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_geodata_layers)


def cmd_devices_list(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import RegistryError, system_registry

    try:
        reg = system_registry(settings)
    except RegistryError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return 1
    devs = [
        d
        for d in reg.values()
        if (args.community is None or d.community == args.community) and (args.kind is None or d.kind == args.kind)
    ]
    if args.json:
        sys.stdout.buffer.write(orjson.dumps([d.as_json() for d in devs]) + b"\n")
        sys.stdout.flush()
        return 0
    head = f"{'device_id':<12} {'kind':<7} {'community':<13} {'compound_id':<12} {'interval_s':>10} "
    print(head + f"{'lon':>12} {'lat':>11}  install")
    for d in devs:
        print(
            f"{d.device_id:<12} {d.kind:<7} {d.community:<13} {d.compound_id:<12} {d.interval_s:>10g} "
            f"{d.lon:>12.7f} {d.lat:>11.7f}  {d.extra.get('install') or ''}"
        )
    print(f"{len(devs)} devices ({reg.path})")
    return 0


def cmd_devices_import(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import ensure_registry
    from geodata.importer import DeviceImportError, import_devices

    ensure_registry(settings)
    try:
        report = import_devices(settings, args.file)
    except DeviceImportError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"{exc.source}: {len(exc.problems)} problem(s); nothing imported", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.summary())
    return 0


def _chosen_devices(args: argparse.Namespace, settings: Settings) -> list[Any] | None:
    """The registry's devices of `--community` (all without it); None, said, if it cannot be read."""
    from core.registry import RegistryError, system_registry

    try:
        reg = system_registry(settings)
    except RegistryError as exc:
        print(f"smartcommunity: {exc}", file=sys.stderr)
        return None
    return [d for d in reg.values() if args.community is None or d.community == args.community]


def cmd_devices_export(args: argparse.Namespace, settings: Settings) -> int:
    from geodata.ledger import write_ledger

    devs = _chosen_devices(args, settings)
    if devs is None:
        return 1
    try:
        write_ledger(args.xlsx, devs)
    except OSError as exc:
        print(f"smartcommunity: cannot write {args.xlsx}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(devs)} devices to {args.xlsx}")
    return 0


def cmd_devices_commissioning(args: argparse.Namespace, settings: Settings) -> int:
    from core.accounts import INFLUX_READER
    from core.influx import InfluxRejected, InfluxUnavailable, client_for
    from geodata import commissioning as cm
    from geodata.layers import layers_dir, load_layers

    devs = _chosen_devices(args, settings)
    if devs is None:
        return 1
    names = {pid: p.name for pid, p in load_layers(layers_dir(settings)).places.items()}
    client = client_for(settings, account=INFLUX_READER if settings.secure and not settings.influx_account else None)
    try:
        groups = cm.check(devs, client, names)
    except InfluxRejected as exc:
        if "database not found" not in exc.error:
            print(f"smartcommunity: InfluxDB refused the query: {exc.error}", file=sys.stderr)
            return 1
        groups = cm.check(devs, None, names)  # nothing was ever stored
    except InfluxUnavailable as exc:
        print(f"smartcommunity: InfluxDB does not answer ({exc}); start it (`smartcommunity services start`)",
              file=sys.stderr)
        return 1
    finally:
        client.close()
    now = cm.now_ms()
    if args.xlsx:
        cm.write_xlsx(args.xlsx, groups, now)
    if args.json:
        doc = {"compounds": [g.summary(now) for g in groups],
               "devices": [c.as_json(now) for g in groups for c in g.devices]}
        sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        sys.stdout.flush()
    else:
        print(cm.text_report(groups, now))
        if args.xlsx:
            print(f"wrote {args.xlsx}")
    return 0


def cmd_geodata_import(args: argparse.Namespace, settings: Settings) -> int:
    from geodata.layer_import import run

    return run(args, settings)


def cmd_geodata_basemap(args: argparse.Namespace, settings: Settings) -> int:
    from geodata.basemap import BasemapError, install

    try:
        ts = install(args.file, settings)
    except BasemapError as exc:
        print(f"smartcommunity: {exc}; basemap not installed", file=sys.stderr)
        return EXIT_BAD_INPUT
    w, s, e, n = ts.bounds
    print(f"installed basemap {ts.path}: {ts.tiles} {ts.format} tiles, zoom {ts.minzoom}-{ts.maxzoom}, "
          f"lon {w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f} (the map shows it at its next load)")
    return 0


def cmd_geodata_synth(args: argparse.Namespace, settings: Settings) -> int:
    from core.geojson_io import write_feature_collection
    from geodata.devplan import synth_features
    from geodata.layers import layers_dir, load_layers

    if args.devices < 1:
        print("smartcommunity: --devices must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    out: Path = args.out or settings.data_path / "synth" / f"devices-{args.devices}.geojson"
    feats = synth_features(load_layers(layers_dir(settings)), args.devices, seed=args.seed)
    meta = {"synthetic": True, "generator": "smartcommunity geodata synth", "seed": args.seed}
    write_feature_collection(out, feats, name="devices", metadata=meta)
    print(f"wrote {len(feats)} devices to {out}")
    return 0


def cmd_geodata_layers(args: argparse.Namespace, settings: Settings) -> int:
    from geodata.layers import layers_dir, load_layers

    layers = load_layers(layers_dir(settings))
    rows = [{"layer": n, "features": len(layers.layer(n)), "source": str(p)} for n, p in layers.sources.items()]
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(rows) + b"\n")
        sys.stdout.flush()
    else:
        for r in rows:
            print(f"{r['layer']:<12} {r['features']:>6}  {r['source']}")
    return 0
