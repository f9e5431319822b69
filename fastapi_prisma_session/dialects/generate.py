"""Writes each database's `compiled.py`: its `sql.py` statements as SQLAlchemy compiles them for the
store's driver, which sqltext.py runs without importing SQLAlchemy.

Run `python -m fastapi_prisma_session.dialects.generate` after changing a statement; the tests write the
modules again and compare (tests/test_sqltext.py), so a change not written out fails them.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import quoted_name

from ..models import session_table
from ..sqltext import EXPIRES_MARK, LIST_MARK, TABLE, quote
from .base import SQLDialect
from .sqlite.datetimes import EPOCH, sqlite_datetime_text

# The driver each database's statements are compiled for, as the store's URLs name them.
DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy", "sqlite": "sqlite+aiosqlite"}
# The statements built by a method, where the database has them.
BUILT = ("prune_lock", "prune_unlock", "activity")
# What the store reads of a database's `Dialect` besides its statements.
TRAITS = (
    "name",
    "longest_key",
    "longest_data",
    "deletes_returning",
    "scans_miss_moved_keys",
    "sid_clash_error",
    "sids_as_array",
    "own_activity_per_batch",
    "ping_activity",
    "user_key_exact",
)
# Names that stand for the table's and the expiry column's in the compiled SQL.
TABLE_NAME, EXPIRES_NAME = "fps_table_name", "fps_expires_column"
HEADER = '''"""{database}'s statements as SQLAlchemy compiles them from sql.py, for sqltext.py.

Written by `python -m fastapi_prisma_session.dialects.generate` (edit sql.py, then run it); the tests write
it again and compare.
"""
'''


def statements(sql: SQLDialect) -> dict[str, Executable]:
    """Every statement `sql` builds for its table, by name."""
    found = {name: value for name, value in vars(sql).items() if isinstance(value, Executable)}
    for name in BUILT:
        built = getattr(sql, name)()
        if built is not None:
            found[name] = built
    return dict(sorted(found.items()))


def _conversion(processor: Any, *, bind: bool) -> str:
    """The name sqltext.py knows a conversion SQLAlchemy applies by (found by what it does)."""
    moment = datetime(2026, 1, 2, 3, 4, 5, 6000)
    if bind and processor(moment) == sqlite_datetime_text(moment):
        return "sqlite_datetime"
    if not bind and processor(0) == EPOCH:
        return "sqlite_datetime"
    raise SystemExit(f"a conversion sqltext.py does not know: {processor!r}")


def compiled(
    database: str, statement: Executable, dialect: Any
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """`statement` as sqltext.py takes it: its SQL with the names left open, its parameters' order, and
    the values, conversions and lists of its parameters."""
    form = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    sql = form.string.replace(quote(database, TABLE_NAME), TABLE).replace(
        quote(database, EXPIRES_NAME), EXPIRES_MARK
    )
    order = tuple(form.positiontup or ())
    lists = tuple(sorted({param.key for param in form.post_compile_params}))
    for name in lists:
        if LIST_MARK.format(name) not in sql:
            raise SystemExit(f"the list parameter {name} is not where sqltext.py looks for it: {sql}")
    options: dict[str, Any] = {}
    fixed = {name: value for name, value in form.construct_params(_check=False).items() if value is not None}
    if fixed:
        options["fixed"] = fixed
    binds = {}
    for name, processor in form._bind_processors.items():
        if form.binds[name].type._type_affinity.__name__ == "ARRAY":
            if processor(["a"]) != ["a"]:
                raise SystemExit(f"an array parameter the driver takes other than as a list: {name}")
            continue
        binds[name] = _conversion(processor, bind=True)
    if binds:
        options["binds"] = binds
    results = tuple(
        None if processor is None else _conversion(processor, bind=False)
        for processor in (
            column.type._cached_result_processor(dialect, None) for column in form._result_columns
        )
    )
    if any(results):
        options["results"] = results
    if lists:
        options["lists"] = lists
    return sql, order, options


def module_text(database: str) -> str:
    """The text of `dialects/<database>/compiled.py`."""
    from . import for_database

    dialect = make_url(f"{DRIVERS[database]}://").get_dialect()()
    table = session_table(
        quoted_name(TABLE_NAME, quote=True), expires_column=quoted_name(EXPIRES_NAME, quote=True)
    )
    sql = for_database(database, table, prune_batch_size=1)
    lines = [HEADER.format(database=database)]
    traits = {trait: getattr(sql, trait) for trait in TRAITS}
    traits["expected_digest"] = sql.expected_data("x") != "x"
    lines.append("from typing import Any\n")
    if traits["longest_data"] is not None:
        lines.append("from ...rows import DataLimit\n")
    lines.append("\nSTATEMENTS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {")
    for name, statement in statements(sql).items():
        lines.append(f"    {name!r}: {compiled(database, statement, dialect)!r},")
    lines.append("}")
    lines.append("TRAITS: dict[str, Any] = {")
    lines.extend(f"    {trait!r}: {value!r}," for trait, value in traits.items())
    lines.append("}\n")
    return "\n".join(lines)


def path_of(database: str) -> Path:
    return Path(__file__).parent / database / "compiled.py"


def main() -> None:
    for database in DRIVERS:
        path_of(database).write_text(module_text(database))
        sys.stderr.write(f"wrote {path_of(database)}\n")


if __name__ == "__main__":
    main()
