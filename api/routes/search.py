"""Search by meaning over insights, dashboards, tables and columns (issue 18)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
