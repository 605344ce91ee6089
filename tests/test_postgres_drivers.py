"""The PostgreSQL driver seam: the statements file and what one table's statements become."""

from __future__ import annotations

from dataclasses import fields

from pyrate_limiter._drivers.postgres_table import DECIDE, FUNCTIONS, SETUP, SQL, TableSQL, derived_name

# Statements the driver and buckets use as they are, not per table.
FIXED = {"lock", "now", "decide_call"}


def test_the_postgres_file_holds_each_statement_the_bucket_uses_and_no_other() -> None:
    made = {field.name for field in fields(TableSQL)} - {"setup", "decide"}
    assert set(SQL) == FIXED | set(SETUP) | {name for pair in FUNCTIONS for name in pair} | made


def test_a_tables_statements_quote_its_name_and_escape_its_percent_signs_where_parameters_follow() -> None:
    table = 'odd "name" 100% {table}'
    statements = TableSQL.of(table, 7)
    assert statements.flush == b'DELETE FROM "odd ""name"" 100%% {table}" WHERE bucket = %s'
    lock, *made = statements.setup
    assert lock == (b"SELECT pg_advisory_xact_lock(%s::bigint)", [7])
    assert len(made) == len(SETUP) + len(FUNCTIONS)
    # Statements without parameters are sent as they are: the name's "%" stays single.
    assert made[0][0].startswith(b'CREATE TABLE IF NOT EXISTS "odd ""name"" 100% {table}" (bucket text NOT NULL')
    function = derived_name(table, DECIDE)
    assert statements.decide.name == function.encode()
    assert statements.decide.text.startswith(f"SELECT {function}($1::bigint, $2::text,".encode())


def test_function_bodies_are_sent_on_one_line_with_their_comments_left_out() -> None:
    for _, body in FUNCTIONS:
        assert "\n" not in SQL[body]
        assert "--" not in SQL[body]
