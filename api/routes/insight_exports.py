"""Exports of an insight with parameter values: CSV streamed, XLSX."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import AUTHENTICATED

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)
