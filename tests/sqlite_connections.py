"""SQLite connections for the tests, kept out of the generated tests because they name ``aiosqlite``."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import aiosqlite

if TYPE_CHECKING:
    from collections.abc import Awaitable


def sqlite_connection(database: str, native: bool, *, uri: bool = False, timeout: float = 5.0) -> Any:
    """A connection to ``database``: an awaitable aiosqlite one when ``native`` (asyncio), else sqlite3.

    sqlite3's is made with ``check_same_thread=False``: generated tests and the async bucket on
    trio use it from several threads.
    """
    if native:
        return aiosqlite.connect(database, uri=uri, timeout=timeout)
    return sqlite3.connect(database, uri=uri, timeout=timeout, check_same_thread=False)


def close_connection(conn: aiosqlite.Connection | sqlite3.Connection) -> Awaitable[None] | None:
    """Close ``conn``: returns the awaitable to await for an aiosqlite connection."""
    if isinstance(conn, aiosqlite.Connection):
        return conn.close()
    conn.close()
    return None
