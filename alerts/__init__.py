"""Alerts: a streaming rule engine that raises, dedupes, updates and resolves alerts."""
