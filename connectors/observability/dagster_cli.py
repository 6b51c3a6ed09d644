"""Run a Dagster command (`dagster-daemon`, `dagster-webserver`) with every log line JSON.

    python -m connectors.observability.dagster_cli dagster-daemon run -m orchestration.definitions

Dagster's own loggers (`dagster.*`, `dagster-webserver`) render JSON with
`--log-format json` (`dagster_log_args`); everything else a library logs through stdlib
logging — e.g. dagster-postgres's `logging.warning("Retrying failed database creation")`,
which would otherwise install a plain-text root handler (`basicConfig`) and print every
Dagster line a second time — goes through structlog's JSON renderer here
(`configure_logging`), redacted. The command is the installed console script of that name.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

from connectors.observability.logs import configure_logging

_DAGSTER_OWN = ("dagster", "dagster-webserver")


class _NotDagsters(logging.Filter):
    """Dagster's loggers have a JSON handler of their own: not twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return not any(name == own or name.startswith(own + ".") for own in _DAGSTER_OWN)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m connectors.observability.dagster_cli COMMAND [ARGS…]")
        return 2
    from connectors.settings import Settings

    settings = Settings()
    handler = configure_logging(settings.log_level, settings.log_format)
    handler.addFilter(_NotDagsters())
    (script,) = entry_points(group="console_scripts", name=args[0]) or (None,)
    if script is None:
        print(f"no console script named {args[0]!r}", file=sys.stderr)
        return 2
    sys.argv = [args[0], *args[1:]]
    result = script.load()()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
