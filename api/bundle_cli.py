"""`sqlbook export` and `sqlbook import`: insights, dashboards, alerts and plugins as one
versioned JSON bundle (README "Templates")."""

from __future__ import annotations

import argparse
from typing import Any


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Adds `export` and `import` to the CLI's subcommands."""
