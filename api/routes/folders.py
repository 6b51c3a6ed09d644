"""Folders (nested) that hold insights: /api/folders."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import AUTHENTICATED

router = APIRouter(prefix="/api/folders", tags=["folders"], responses=AUTHENTICATED)
