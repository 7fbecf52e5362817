"""What differs by dialect in more than one repository: the INSERT (for ON CONFLICT), PostgreSQL's or SQLite's;
and a transaction's commit that need not wait for the disk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import sqltypes

from hub.store.tables import UTCDateTime


def insert_for(dialect: str, table: Any) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


# ---- many rows in one statement -----------------------------------------------------------------------------------
#
# SQLAlchemy's executemany sends a row at a time on psycopg (in its pipeline): each row's parameters processed in
# Python and bound, each row an execution of its own in PostgreSQL. On PostgreSQL the rows go instead as one JSON
# array (encoded in C by orjson, `as_json`), turned back into rows by json_to_recordset() in one INSERT (or
# UPDATE ... FROM): in-process, a set of 32 new tickets applied together cost the hub 0.30-0.36 ms of CPU an event
# instead of 0.44-0.56 (arrays through unnest() were no cheaper: psycopg dumps a list in Python). On SQLite
# executemany is a loop in C already.
#
# Where a JSON column holds objects or arrays (an outbox row's provenance, a delivery's fields) the array goes in as
# jsonb instead, through jsonb_to_recordset(): json_to_recordset() hands each such value on as text, parsed a second
# time into jsonb, and PostgreSQL spent 0.96 ms on a set's 100 outbox rows where jsonb took 0.61 (the statement's own
# 0.09 included). Where they hold only scalars json is the cheaper (20 field values: 0.16 vs 0.19 ms), so each
# statement is chosen by its first row.

def _record_column(column: Any) -> tuple[str, str]:
    """(the column's type in json_to_recordset's row, the expression that writes it)."""
    kind, name = column.type, column.name
    if isinstance(kind, sqltypes.JSON):  # None as JSON null, as SQLAlchemy's JSON type stores it
        return "jsonb", f"coalesce(u.{name}, 'null'::jsonb)"
    if isinstance(kind, UTCDateTime):
        return "timestamptz", f"u.{name}"
    for sql, python in (("boolean", sqltypes.Boolean), ("bigint", sqltypes.BigInteger), ("integer", sqltypes.Integer),
                        ("float8", sqltypes.Float), ("text", sqltypes.String)):
        if isinstance(kind, python):
            return sql, f"u.{name}"
    raise TypeError(f"{column.table.name}.{name}: no JSON form for {kind!r}")


def as_json(rows: Any) -> str:
    """`rows` (any JSON value) as compact JSON text for the database to read back (PostgreSQL's json_to_recordset,
    reconcile's copies on SQLite), UTF-8 as is, datetimes checked aware, moved to UTC, in ISO 8601. orjson, a quarter
    of json.dumps' time for a set's rows (20 field values: 51 vs 206 us, with the datetimes converted); what orjson
    refuses (an integer beyond 64 bits, a key that is not a string) goes through the standard library, as before."""
    try:
        return orjson.dumps(rows, default=_moment, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_moment)


def _moment(value: Any) -> str:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def utc(value: datetime) -> datetime:
    """`value` in UTC, as the store keeps every moment; a naive datetime is refused (as UTCDateTime refuses it)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to the store; use UTC")
    return value.astimezone(UTC)


def _nested(table: Any, row: Mapping[str, Any]) -> bool:
    """Whether a JSON column of `row` holds an object or an array (see above: the rows then go in as jsonb)."""
    return any(isinstance(value, dict | list) and isinstance(table.c[name].type, sqltypes.JSON)
               for name, value in row.items())


def _recordset(table: Any, names: tuple[str, ...], nested: bool) -> tuple[str, list[str]]:
    columns = [_record_column(table.c[name]) for name in names]
    form = "jsonb" if nested else "json"
    source = (f"{form}_to_recordset(%(rows)s::{form}) AS u("
              + ", ".join(f"{name} {kind}" for name, (kind, _) in zip(names, columns, strict=True)) + ")")
    return source, [expr for _, expr in columns]


@cache
def _json_insert(table: Any, names: tuple[str, ...], on_conflict: str, returning: tuple[str, ...], nested: bool
                 ) -> str:
    source, exprs = _recordset(table, names, nested)
    keys = [c.name for c in table.primary_key.columns]
    conflict = ""
    if on_conflict == "update":
        conflict = (f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                    + ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys))
    elif on_conflict == "nothing":
        conflict = f" ON CONFLICT ({', '.join(keys)}) DO NOTHING"
    return (f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(exprs)} FROM {source}{conflict}"
            + (f" RETURNING {', '.join(returning)}" if returning else ""))


def insert_many(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]], on_conflict: str | None = None,
                returning: Sequence[str] = ()) -> list[Any]:
    """INSERT `rows` (mappings with the same keys) into `table` in one statement, in their order: `on_conflict`
    "update" (the primary key's row takes the given columns; of rows with one key the last wins, as a row at a
    time would) or "nothing"; the `returning` columns of the rows inserted, if asked for."""
    if not rows:
        return []
    names = tuple(rows[0])
    if on_conflict == "update":
        keys = [c.name for c in table.primary_key.columns]
        rows = list({tuple(row[k] for k in keys): row for row in rows}.values())
    if conn.dialect.name != "postgresql":
        result = conn.execute(_core_insert(conn.dialect.name, table, names, on_conflict or "", tuple(returning)),
                              list(rows))
        return list(result) if returning else []
    statement = _json_insert(table, names, on_conflict or "", tuple(returning), _nested(table, rows[0]))
    result = conn.exec_driver_sql(statement, {"rows": as_json(rows)})
    return list(result) if returning else []


@cache
def _core_insert(dialect: str, table: Any, names: tuple[str, ...], on_conflict: str, returning: tuple[str, ...]
                 ) -> Any:
    """insert_many's statement for executemany (SQLite); built once."""
    stmt = insert_for(dialect, table)
    if on_conflict == "update":
        keys = [c.name for c in table.primary_key.columns]
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={n: stmt.excluded[n] for n in names if n not in keys})
    elif on_conflict == "nothing":
        stmt = stmt.on_conflict_do_nothing()
    return stmt.returning(*(table.c[n] for n in returning)) if returning else stmt


@cache
def _core_update(table: Any, key: str, names: tuple[str, ...]) -> Any:
    """update_many's statement for executemany (SQLite), parameters k_<column>; built once."""
    return (table.update().where(table.c[key] == bindparam(f"k_{key}"))
            .values({name: bindparam(f"k_{name}") for name in names if name != key}))


@cache
def _json_update(table: Any, key: str, names: tuple[str, ...], nested: bool) -> str:
    """The keys are given again as an array, so that the rows are found by the key's index: joined only to the
    recordset (which the planner takes for 100 rows, whatever it holds), a set's 20 inbox events were found by
    reading the whole table (a hash join over it while its statistics lagged behind a burst: 1.8 ms at 8,000
    events, growing with them)."""
    source, exprs = _recordset(table, names, nested)
    return (f"UPDATE {table.name} SET "
            + ", ".join(f"{name} = {expr}" for name, expr in zip(names, exprs, strict=True) if name != key)
            + f" FROM {source} WHERE {table.name}.{key} = u.{key}"
            + f" AND {table.name}.{key} = ANY(%(keys)s::{_record_column(table.c[key])[0]}[])")


def update_many(conn: Connection, table: Any, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """UPDATE the rows of `table` whose `key` column is each of `rows`' to that row's other values, in one
    statement (of rows with one key the last wins, as a row at a time would)."""
    if not rows:
        return
    names = tuple(rows[0])
    rows = list({row[key]: row for row in rows}.values())
    if conn.dialect.name != "postgresql":
        conn.execute(_core_update(table, key, names), [{f"k_{name}": value for name, value in row.items()}
                                                       for row in rows])
        return
    conn.exec_driver_sql(_json_update(table, key, names, _nested(table, rows[0])),
                         {"rows": as_json(rows), "keys": [row[key] for row in rows]})
