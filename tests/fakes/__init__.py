"""Faithful fake provider servers for connector tests (loopback, deterministic clock and data)."""
