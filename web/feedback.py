"""Placeholder blueprint, filled by the issue-7 work on feedback."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("feedback", __name__)
