"""HTTP API of the accounts domain."""

from __future__ import annotations

from apiflask import APIBlueprint

bp = APIBlueprint("accounts", __name__, tag="Accounts")
