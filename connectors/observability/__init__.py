"""Metrics (Prometheus), structured logs (structlog) and the request id."""
