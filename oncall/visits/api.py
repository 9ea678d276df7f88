"""HTTP API of the visits domain."""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("visits", __name__, tag="Visits")
