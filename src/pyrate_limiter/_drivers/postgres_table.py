"""The statements of one PostgreSQL table: ``postgres.sql`` rendered for its name, and the array
literals its functions take and give back. The drivers in ``postgres.py`` run them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import statements
from .postgres import Prepared

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .postgres import Steps

SQL = statements("postgres.sql")

DECIDE = "decide5"
"""The suffix of the deciding function: decide3 decided one item; decide4 decides a batch in order
and takes ``p_durable``; decide5 honours the marker's pause. Tables made for an older one keep it,
and get decide5 (and the ``paused`` column) on first use."""

LOCK = SQL["lock"].encode()
NOW = SQL["now"].encode()

SETUP = ("create_table", "add_paused", "ts_index", "cum_index")
"""The statements making a table and its indexes, in order (each also for a table made before)."""

FUNCTIONS = (("trim_head", "trim_body"), ("decide_head", "decide_body"), ("pause_head", "pause_body"))
"""Each function a table gets, as the statement creating it and its body, in the order they are made."""


@dataclass(frozen=True)
class TableSQL:
    """The text of each statement of ``postgres.sql`` on one table, fixed for the bucket's life."""

    setup: Steps  # run once, holding the setup lock, when a statement finds something missing
    decide: Prepared  # the deciding function's call, prepared on each connection
    count: bytes
    state: bytes
    peek: bytes
    leak: bytes
    flush: bytes
    release: bytes
    pause: bytes
    paused: bytes

    @classmethod
    def of(cls, table: str, setup_lock: int) -> TableSQL:
        """The statements on ``table`` (any text: it is quoted), whose setup holds ``setup_lock``."""
        from psycopg import sql

        ident = {
            "table": sql.Identifier(table),
            "function": sql.Identifier(derived_name(table, DECIDE)),
            "trim": sql.Identifier(derived_name(table, "trim")),
            "pause": sql.Identifier(derived_name(table, "pause")),
            "ts_index": sql.Identifier(derived_name(table, "ts")),
            "cum_index": sql.Identifier(derived_name(table, "cum")),
        }
        # Statements sent with parameters have their "%" parsed as placeholders, even inside a
        # quoted identifier: there the table's name is escaped; statements without are sent as is.
        table_sql = sql.SQL(sql.Identifier(table).as_string(None).replace("%", "%%"))

        def render(name: str) -> bytes:
            return sql.SQL(SQL[name]).format(**{**ident, "table": table_sql}).as_bytes(None)

        def function(head: str, body: str) -> bytes:
            literal = sql.Literal(sql.SQL(SQL[body]).format(**ident).as_string(None))
            return sql.SQL(SQL[head]).format(body=literal, **ident).as_bytes(None)

        setup: Steps = [
            (LOCK, [setup_lock]),
            *((sql.SQL(SQL[name]).format(**ident).as_bytes(None), None) for name in SETUP),
            *((function(head, body), None) for head, body in FUNCTIONS),
        ]
        function_name = derived_name(table, DECIDE)
        decide = Prepared(function_name.encode(), SQL["decide_call"].format(function=function_name).encode())
        names = ("count", "state", "peek", "leak", "flush", "release", "pause", "paused")
        return cls(setup, decide, *(render(name) for name in names))


def derived_name(table: str, suffix: str) -> str:
    """A fixed-length name per table for its functions and indexes (the table's own name may be 63 bytes)."""
    # "layout2": the table layout with the marker's oldest column; a function made for the first
    # layout is never reused (its table then fails clearly, on the missing column).
    digest = hashlib.blake2b(table.encode(), digest_size=8, person=b"pyrate-table").hexdigest()
    return f"pyrate_limiter_layout2_{digest}_{suffix}"


def integers(values: Iterable[int | None]) -> str:
    """An array literal of integers (``None``: NULL), sent as text for the server to parse.

    Text of unknown type, not a list psycopg would type by its values (``int2[]`` for small
    ones): the function's own ``bigint[]`` then needs no cast, element by element, on the server.
    """
    return "{" + ",".join("NULL" if value is None else str(int(value)) for value in values) + "}"


def items(requests: Sequence[tuple[str, int, int, int | None]]) -> tuple[str, str]:
    """The array literals of ``(name, stamp, weight, max_delay)`` requests: their names, and
    their numbers three by three."""
    if len(requests) == 1:  # the usual call, spared the generators
        name, stamp, weight, max_delay = requests[0]
        return _quoted(name), f"{{{int(stamp)},{int(weight)},{'NULL' if max_delay is None else int(max_delay)}}}"
    names = "{" + ",".join(_quoted(name)[1:-1] for name, *_ in requests) + "}"
    return names, integers(number for _, *numbers in requests for number in numbers)


def parse_integers(value: bytes) -> list[int | None]:
    """The integers of an array the server sent as text, ``b"{0,NULL,17}"``."""
    return [None if number == b"NULL" else int(number) for number in value[1:-1].split(b",")] if value != b"{}" else []


def _quoted(name: str) -> str:
    """A one-element array literal of ``name``: quoted, its backslashes and double quotes escaped."""
    return '{"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"}'
