"""HTTP API of the rota domain."""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("rota", __name__, tag="Rota")
