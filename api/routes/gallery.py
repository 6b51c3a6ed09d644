"""The built-in template gallery: list and install (issue 18)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
