"""Placeholder blueprint, filled by the issue-7 work on messages."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("messages", __name__)
