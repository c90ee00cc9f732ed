"""Bridges: adapters for devices that do not speak the contract themselves.

Each adapter (one module: `onenet.py`, ...) receives or polls what a platform or gateway offers and
publishes it as the devices' own telemetry and status under the contract's topics, so ingest,
alerts and the dashboard see no difference. What cannot be mapped is dead-lettered with a reason.
See README.md beside this file.
"""
