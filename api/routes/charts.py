"""Charts: Vega-Lite specs, server-rendered PNG/SVG, visualization plugins."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import AUTHENTICATED

router = APIRouter(prefix="", tags=["charts"], responses=AUTHENTICATED)
