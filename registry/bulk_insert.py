"""PostgreSQL's bulk INSERT of a batch's registry rows (transfers, holds): one statement,
one array per column (`UNNEST`, as Django's own bulk_create sends rows there).

A column whose value is the same in every row (the defaults a batch leaves, its one actor,
its state) goes once as a value, not as an array of 8,189 copies: psycopg renders each array
element in Python, and those copies were most of the insert's time on the client.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def unnest_insert(
    model: type[Model],
    fields: Sequence[Field[Any, Any]],
    rows: list[list[Any]],
    *,
    keep_existing: bool = True,
) -> tuple[str, list[Any]]:
    """The INSERT of `rows` (values in `fields`' order, as the database takes them) into
    `model`'s table, and its parameters: the uniform columns' values, then the other
    columns' arrays. `keep_existing`: a row already there is left as it is (ON CONFLICT DO
    NOTHING); without it (the batch benchmark's bare baseline) a conflict fails."""
    assert rows, "a batch inserts at least one row"
    columns = [list(column) for column in zip(*rows, strict=True)]
    uniform = tuple(_all_equal(column) for column in columns)
    if all(uniform):  # one row (or copies of one): arrays of it
        uniform = (False,) * len(columns)
    params = [column[0] for column, same in zip(columns, uniform, strict=True) if same]
    params += [column for column, same in zip(columns, uniform, strict=True) if not same]
    return _insert_sql(model, tuple(fields), uniform, keep_existing), params


@functools.cache
def _insert_sql(
    model: type[Model],
    fields: tuple[Field[Any, Any], ...],
    uniform: tuple[bool, ...],
    keep_existing: bool,
) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    types = [field.cast_db_type(connection) for field in fields]
    values = ", ".join(
        f"%s::{types[position]}" if same else f"c{position}"
        for position, same in enumerate(uniform)
    )
    varying = [position for position, same in enumerate(uniform) if not same]
    arrays = ", ".join(f"%s::{types[position]}[]" for position in varying)
    aliases = ", ".join(f"c{position}" for position in varying)
    on_conflict = " ON CONFLICT DO NOTHING" if keep_existing else ""
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
        f"SELECT {values} FROM UNNEST({arrays}) AS rows({aliases}){on_conflict}"
    )


def _all_equal(values: list[Any]) -> bool:
    first = values[0]
    return values.count(first) == len(values) and all(type(v) is type(first) for v in values)
