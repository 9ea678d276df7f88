"""Paging: one collection shape for every list endpoint.

Every list answers ``{"items": [...], "limit": n, "offset": n, "next_offset": n|null}``;
``next_offset`` is null on the last page. Use it in three places:

Schemas (``oncall/<domain>/schemas.py``)::

    from oncall.core.paging import PageQuery, envelope_schema

    class ZoneQuery(PageQuery):          # other filters combine with limit/offset
        active = Boolean()

    ZonePage = envelope_schema(ZoneOut, "ZonePage")

Services (fetch ``limit + 1`` rows, ordered stably with the id as tie-break)::

    from oncall.core.paging import check_page, envelope, page_of

    check_page(limit, offset)                     # 422 naming limit/offset if out of range
    stmt = scoped(Zone, actor.circle_id).order_by(Zone.name, Zone.id)
    rows = list(db.session.scalars(page_of(stmt, limit, offset)))
    page = envelope(rows, limit, offset)          # items: at most `limit` rows
    page["items"] = [serialise(z) for z in page["items"]]
    return page

Views::

    @bp.get("/zones")
    @require(...)
    @bp.input(ZoneQuery, location="query", arg_name="query")
    @bp.output(ZonePage)
    def list_zones(query: dict[str, Any]) -> dict[str, Any]:
        return services.list_zones(current_user(), **query)
"""

from __future__ import annotations

from typing import Any, TypeVar

from apiflask import Schema
from apiflask.fields import Integer, List, Nested
from apiflask.validators import Range
from sqlalchemy import Select

from oncall.errors import Validator

#: Rows per page by default and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Deepest offset accepted (keeps the value far inside what the database can hold).
MAX_OFFSET = 1_000_000

T = TypeVar("T")


class PageQuery(Schema):
    """The paging query parameters; a list's query schema inherits from it."""

    limit = Integer(
        load_default=DEFAULT_LIMIT,
        validate=Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"Rows per page, 1 to {MAX_LIMIT}"},
    )
    offset = Integer(
        load_default=0,
        validate=Range(min=0, max=MAX_OFFSET),
        metadata={"description": "Rows to skip; use the previous page's next_offset"},
    )


def page_query_schema() -> type[PageQuery]:
    """The paging query schema class (``limit`` 1..200 default 50, ``offset`` >= 0 default 0)."""
    return PageQuery


def check_page(limit: int, offset: int, v: Validator | None = None) -> None:
    """Name ``limit`` or ``offset`` when out of range (for services called without the
    query schema): added to ``v``, or raised at once (422) when no ``v`` is given."""
    errors = v if v is not None else Validator()
    errors.check(1 <= limit <= MAX_LIMIT, "limit", f"Must be between 1 and {MAX_LIMIT}.")
    errors.check(0 <= offset <= MAX_OFFSET, "offset", f"Must be between 0 and {MAX_OFFSET}.")
    if v is None:
        errors.raise_if_any()


def page_of(stmt: Select[Any], limit: int, offset: int) -> Select[Any]:
    """``stmt`` with ``OFFSET offset LIMIT limit + 1`` (one row more tells if a page follows)."""
    return stmt.offset(offset).limit(limit + 1)


def envelope(rows: list[T], limit: int, offset: int) -> dict[str, Any]:
    """The collection object for ``rows`` fetched with ``limit + 1``: at most ``limit``
    items, and ``next_offset`` null when no row follows."""
    more = len(rows) > limit
    return {
        "items": rows[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


_ENVELOPES: dict[str, type[Schema]] = {}


def envelope_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """The output schema named ``name`` of a page of ``item_schema`` items (one class per
    name, so the OpenAPI document lists it once).

    The items get their own subclass ``<name>Item`` of ``item_schema`` (same fields):
    the OpenAPI generator registers a class once per use site otherwise, and the item
    schema is usually also the output of the endpoint that reads one row.
    """
    existing = _ENVELOPES.get(name)
    if existing is not None:
        if existing.item_schema is not item_schema:  # type: ignore[attr-defined]
            raise ValueError(f"Envelope schema {name} already pages another item schema.")
        return existing
    item = type(
        f"{name}Item",
        (item_schema,),
        {"__doc__": item_schema.__doc__, "__module__": item_schema.__module__},
    )
    fields: dict[str, Any] = {
        "__doc__": f"A page of {item_schema.__name__} items.",
        "__module__": item_schema.__module__,
        "item_schema": item_schema,
        "items": List(Nested(item), required=True),
        "limit": Integer(required=True),
        "offset": Integer(required=True),
        "next_offset": Integer(
            required=True, allow_none=True, metadata={"description": "Null on the last page"}
        ),
    }
    schema = type(name, (Schema,), fields)
    _ENVELOPES[name] = schema
    return schema
