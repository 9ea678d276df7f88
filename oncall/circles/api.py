"""HTTP API of the circles domain."""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("circles", __name__, tag="Circles")
