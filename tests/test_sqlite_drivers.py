"""The SQLite driver seam: which driver each variant gives a connection, and the statements file."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import aiosqlite
import anyio
import pytest

from pyrate_limiter import Rate, SQLiteBucket, SQLiteClock
from pyrate_limiter._drivers import parse
from pyrate_limiter._drivers.sqlite import SQL, TableSQL, async_driver, driver

if TYPE_CHECKING:
    from collections.abc import Generator

# Statements the drivers and buckets use as they are, not per table.
FIXED = {
    "begin",
    "commit",
    "rollback",
    "now",
    "wal",
    "synchronous",
    "busy_timeout",
    "set_busy_timeout",
    "database_list",
    "first_reaching",
    "counted_since",
    "before_at",
}


def test_statements_are_the_blocks_between_markers_on_one_line_without_comments() -> None:
    text = "-- a header\n\n-- name: one\nSELECT 1\n  -- why\nFROM t\n\n-- name: two  \nDELETE FROM t\n"
    assert parse(text, "x.sql") == {"one": "SELECT 1 FROM t", "two": "DELETE FROM t"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "'a' is repeated"), ("-- name: a\n-- only\n", "'a' is empty")],
)
def test_a_repeated_or_empty_statement_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"x.sql: statement {problem}"):
        parse(text, "x.sql")


def test_the_sqlite_file_holds_each_statement_the_bucket_uses_and_no_other() -> None:
    assert set(SQL) == FIXED | {field.name for field in fields(TableSQL)} - {"usage"}  # usage: state, extended
    table = TableSQL.of('odd "name" {table}', [3, 7])
    assert table.flush == 'DELETE FROM "odd ""name"" {table}"'
    assert "n.cum + ?1 - 3 ORDER BY" in table.state
    assert "n.cum + ?1 - 7 ORDER BY" in table.state
    assert table.befores.count("WHERE ts <= ?") == 2  # one per rate: ?1, ?2


def select_thread() -> Generator[tuple[str, tuple[()]], list[Any], int]:
    rows = yield "SELECT thread()", ()
    return int(rows[0][0])


def test_a_sqlite3_connection_runs_in_the_caller_for_sync_and_in_a_worker_thread_for_async() -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    conn.create_function("thread", 0, threading.get_ident)
    try:
        assert driver(conn, "test").run(select_thread(), write=True) == threading.get_ident()

        async def run_async() -> int:
            result: int = await async_driver(conn, "test").run(select_thread(), write=True)
            return result

        for backend in ("asyncio", "trio"):
            assert anyio.run(run_async, backend=backend) != threading.get_ident()
        assert not conn.in_transaction
    finally:
        conn.close()


def test_the_sync_variant_refuses_an_aiosqlite_connection_naming_the_async_twin() -> None:
    async def give_it() -> None:
        async with aiosqlite.connect(":memory:") as conn:
            with pytest.raises(TypeError, match=r"got an aiosqlite one: it needs the async twin \(AsyncSQLiteBucket"):
                SQLiteBucket([Rate(1, 1000)], conn)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="sqlite3 connection for SQLiteClock"):
                SQLiteClock(conn)  # type: ignore[arg-type]

    anyio.run(give_it)
