"""Ingest: MQTT telemetry → contract validation → InfluxDB, with a dead-letter store."""
