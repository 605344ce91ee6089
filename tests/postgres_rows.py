"""A PostgreSQL bucket's table read behind the bucket's back: its item rows, its marker, and
triggers that witness each insert from inside the deciding transaction."""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from .windows import assert_windows_hold

if TYPE_CHECKING:
    from pyrate_limiter import Rate


def unique_key() -> str:
    """A bucket key no other test uses, so tests sharing the table never meet."""
    return f"key-{os.urandom(6).hex()}"


def rows(dsn: str, table: str, key: str) -> list[tuple[Any, ...]]:
    """The stored items of one bucket, oldest first, read behind the bucket's back."""
    query = "SELECT name, ts, weight, cum FROM {} WHERE bucket = %s AND ts IS NOT NULL ORDER BY cum"
    return _read(dsn, table, query, key)


def marker(dsn: str, table: str, key: str) -> tuple[Any, ...] | None:
    """The bucket's marker row (no name, no ts), as ``(newest trimmed stamp, weight trimmed, oldest item)``."""
    found = _read(dsn, table, "SELECT weight, cum, oldest FROM {} WHERE bucket = %s AND ts IS NULL", key)
    assert len(found) <= 1
    return found[0] if found else None


def _read(dsn: str, table: str, query: str, key: str) -> list[tuple[Any, ...]]:
    # "%" in a quoted identifier still reads as a placeholder when parameters are passed.
    escaped = sql.SQL(sql.Identifier(table).as_string(None).replace("%", "%%"))
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL(query).format(escaped), [key]).fetchall()


def _start_trigger(dsn: str, table: str, key: str, kind: str, columns: str, values: str) -> str:
    """A table ``kind`` + random suffix, and an insert trigger filling it with ``values`` for each
    item row of bucket ``key``, in the inserting transaction; return the table's name."""
    made = f"pyrate {kind} {os.urandom(6).hex()}"
    names = {"t": sql.Identifier(made), "table": sql.Identifier(table), "function": sql.Identifier(made + " f")}
    body = sql.SQL(
        "BEGIN IF NEW.bucket = {key} AND NEW.name IS NOT NULL THEN INSERT INTO {t} VALUES (" + values + ");"
        " END IF; RETURN NULL; END"
    ).format(key=sql.Literal(key), **names)
    with psycopg.connect(dsn, autocommit=True) as conn:  # no parameters: "%" in names stays as is
        conn.execute(sql.SQL("CREATE TABLE {t} (" + columns + ")").format(**names))
        conn.execute(
            sql.SQL("CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {body}").format(
                body=sql.Literal(body.as_string(conn)), **names
            )
        )
        conn.execute(
            sql.SQL("CREATE TRIGGER {t} AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()").format(
                **names
            )
        )
    return made


def _finish_trigger(dsn: str, table: str, made: str) -> list[tuple[Any, ...]]:
    """The rows ``_start_trigger``'s table got; the table, its trigger and its function are removed."""
    names = {"t": sql.Identifier(made), "table": sql.Identifier(table), "function": sql.Identifier(made + " f")}
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute(sql.SQL("SELECT * FROM {t}").format(**names)).fetchall()
        conn.execute(sql.SQL("DROP TRIGGER {t} ON {table}").format(**names))
        conn.execute(sql.SQL("DROP FUNCTION {function}()").format(**names))
        conn.execute(sql.SQL("DROP TABLE {t}").format(**names))
    return got


def start_audit(dsn: str, table: str, key: str) -> str:
    """Copy each item row bucket ``key`` records (at its recorded time) into a new table; return its name.

    A trigger, in the decision's own transaction, witnesses where each item went from the
    server's side: what the bucket reports (``put`` reports nothing) is checked against it.
    """
    return _start_trigger(dsn, table, key, "audit", "ts bigint NOT NULL, weight bigint NOT NULL", "NEW.ts, NEW.weight")


def finish_audit(dsn: str, table: str, audit: str) -> list[tuple[int, int]]:
    """The ``(ts, weight)`` recorded since ``start_audit``; the audit is removed."""
    return [(int(ts), int(weight)) for ts, weight in _finish_trigger(dsn, table, audit)]


def start_witness(dsn: str, table: str, key: str) -> str:
    """Record, for each item row bucket ``key`` inserts, its transaction and the ``synchronous_commit``
    it commits with, from inside that transaction; return the witness table's name."""
    columns, values = (
        "xid bigint NOT NULL, setting text NOT NULL",
        "txid_current(), current_setting('synchronous_commit')",
    )
    return _start_trigger(dsn, table, key, "witness", columns, values)


def finish_witness(dsn: str, table: str, witness: str) -> list[tuple[int, str]]:
    """The ``(transaction, synchronous_commit)`` of each item recorded since ``start_witness``; the witness goes."""
    return [(int(xid), str(setting)) for xid, setting in _finish_trigger(dsn, table, witness)]


def assert_recorded_exactly(
    admitted: list[tuple[int, int]],
    recorded: list[tuple[int, int]],
    stored: list[tuple[Any, ...]],
    mark: tuple[Any, ...] | None,
    rates: list[Rate],
) -> None:
    """Where the admitted ``(stamp, weight)`` were ``recorded``, no window exceeds its rate; ``stored``
    (the bucket's items) holds every recorded item the last trim left and nothing else; ``mark`` (the
    bucket's marker) knows the oldest of them."""
    assert_windows_hold(recorded, rates)
    assert Counter(weight for _, weight in recorded) == Counter(weight for _, weight in admitted)
    # Each item is recorded at or after its stamp (later when a trim overtook it).
    assert all(at >= stamp for at, stamp in zip(sorted(recorded), sorted(admitted), strict=True))
    trimmed_up_to = -1 if mark is None or mark[0] is None else mark[0]
    kept = Counter(entry for entry in recorded if entry[0] > trimmed_up_to)
    assert Counter((row[1], row[2]) for row in stored) == kept
    if stored:  # the marker's oldest may be earlier than the oldest item (after a release), never later
        assert mark is not None
        assert mark[2] <= min(row[1] for row in stored)
