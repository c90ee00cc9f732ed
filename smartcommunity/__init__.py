"""smartcommunity: shared package (CLI, settings, contract types, service supervisor)."""

__version__ = "0.1.0"
