"""Console pages (server-rendered)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static")
