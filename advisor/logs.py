"""Moved to `advisor.readers` (one module per source); kept so `advisor.logs.read_log` still imports."""

from advisor.readers import detect_format, read_log  # noqa: F401
