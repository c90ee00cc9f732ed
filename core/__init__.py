"""The ground floor: what every part shares and nothing else.

The external contract's vocabulary and types (`contract`), the one validator, the device registry,
settings, Beijing time (`timebase`), the severity scale (`severity`), the InfluxDB and MQTT clients,
heartbeats and the Prometheus collector over them. It imports nothing of the parts (ingest, alerts,
dashboard, geodata, simulators) nor of the launcher (`smartcommunity`); `tests/core/test_layers.py`
checks that.
"""

__version__ = "0.1.0"
