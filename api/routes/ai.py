"""Assistive AI: question → SQL, explain, answer (issue 18). Off until SQLBOOK_AI_URL is set."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
