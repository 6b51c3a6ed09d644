"""Export and import of insights, dashboards, alerts and plugins as JSON bundles (issue 18)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
