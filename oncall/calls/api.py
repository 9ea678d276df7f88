"""HTTP API of the calls domain."""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("calls", __name__, tag="Calls")
