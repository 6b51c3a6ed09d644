"""Insights: CRUD, search, trash, duplicate, revisions, run: /api/insights."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import AUTHENTICATED

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)
