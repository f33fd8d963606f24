"""Cursor pagination over time-ordered ids: the cursor is the last id of the previous page."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.ids import is_valid_id

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def paginate(
    db: Session,
    stmt: Select[T],
    id_column: InstrumentedAttribute[Any],
    *,
    kind: str,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[T], str | None]:
    """One page of `stmt` in id order, and the cursor for the next page (None on the last)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be between 1 and {MAX_LIMIT}")
    if cursor is not None:
        if not is_valid_id(kind, cursor):
            raise InvalidInputError("cursor is malformed; pass back the next_cursor of a previous page")
        stmt = stmt.where(id_column > cursor)
    rows = list(db.scalars(stmt.order_by(id_column).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(getattr(rows[-1], "id"))  # noqa: B009 - T is any mapped model with an id
    return rows, None
