"""Snapshot schedules of an insight and their stored results."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import AUTHENTICATED

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)
