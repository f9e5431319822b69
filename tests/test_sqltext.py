"""The statements the store runs without SQLAlchemy (sqltext.py, dialects/<db>/compiled.py) are, to the
character and argument, what SQLAlchemy compiles from sql.py, for the default table and for others."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import quoted_name

from fastapi_prisma_session.dialects import for_database
from fastapi_prisma_session.dialects.generate import DRIVERS, module_text, path_of, statements
from fastapi_prisma_session.executor import Prepared
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.sqltext import SQLText

DATABASES = sorted(DRIVERS)
PARAMS: dict[str, Any] = {
    "session_id": "sid-1",
    "new_sid": "sid-2",
    "sids": ["a", "b", "c"],
    "ids": ["i1", "i2"],
    "record_id": "rec",
    "payload": '{"a": 1}',
    "expires": datetime(2026, 12, 7, 1, 2, 3, 456000),
    "expected": '{"a": 0}',
    "now": datetime(2026, 12, 6, 1, 2, 3, 456000),
    "batch_size": 500,
    "key": 42,
    "pattern": '%"a":%',
}


@pytest.mark.parametrize("database", DATABASES)
def test_the_compiled_modules_are_what_sql_py_compiles_to(database: str) -> None:
    # Fails when a statement of sql.py changed without `python -m fastapi_prisma_session.dialects.generate`.
    assert path_of(database).read_text() == module_text(database)


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize(
    ("table_name", "expires_column"), [("Session", "expiresAt"), ("my sessions", "expires"), ('od"d`', "e")]
)
def test_each_statement_binds_as_sqlalchemy_binds_it(
    database: str, table_name: str, expires_column: str
) -> None:
    dialect = make_url(f"{DRIVERS[database]}://").get_dialect()()
    # SQLAlchemy quotes a name only where it must; the compiled statements always do, which means the same.
    table = session_table(
        quoted_name(table_name, quote=True), expires_column=quoted_name(expires_column, quote=True)
    )
    built = statements(for_database(database, table, prune_batch_size=1))
    text = SQLText(database, table_name, expires_column, 1, full=lambda: None)
    assert set(text.statements) == set(built)
    assert len(built) > 20
    for name, statement in built.items():
        expected = Prepared(statement, dialect)
        assert text.statements[name].bind(PARAMS) == expected.bind(PARAMS), name
        width = len(statement.selected_columns) if hasattr(statement, "selected_columns") else 0
        for raw in (tuple("2026-12-07 01:02:03" for _ in range(width)), tuple(0 for _ in range(width))):
            assert text.statements[name].row(raw) == expected.row(raw), name


def test_a_list_parameter_without_values_matches_no_row() -> None:
    text = SQLText("sqlite", "Session", "expiresAt", 1, full=lambda: None)
    sql, args = text.statements["delete"].bind({"sids": []})
    assert sql.endswith("IN (NULL)")
    assert args == []
