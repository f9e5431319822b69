"""The session table's migrations: the Alembic operations, and the package's own revisions.

**Your own Alembic project.** A revision creates the table with the helpers::

    from fastapi_prisma_session import migration

    def upgrade() -> None:
        migration.upgrade()            # or migration.upgrade(table_name="sessions", expires_column="expires")

    def downgrade() -> None:
        migration.downgrade()

and `target_metadata = migration.metadata` in its env.py lets `alembic check` and `--autogenerate` see the
table as it is. `alembic_url` turns a plain `postgresql://` URL into the async one an `alembic init -t
async` environment needs.

**The package's own revisions** live in `fastapi_prisma_session/migrations/` and ship in the wheel:
`python -m fastapi_prisma_session migrate` runs them through `config()`, and the repository's
`alembic.ini` points at the same folder. Their version table is `version_table(table_name)`, never the
`alembic_version` of an application's own Alembic project.

**Adoption.** A session table that is already there when the first revision runs (one `prisma migrate`
made) is adopted rather than created: checked to have the session table's columns (`adopt`; any other
table of that name is refused) and marked as adopted, so that a downgrade leaves it and its rows in place
(`adopted`, `leave_adopted`). The mark lives in the database, in the package's own version table: a
column `adopted` that Alembic does not know of, true on the row of a database whose table was adopted
(NULL, or absent, when the revision created the table). Alembic writes the row after the revision has
run, so the mark is set when Alembic reports the row written (`record_adoption`, env.py's
`on_version_apply`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import op
from alembic.util import CommandError
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    column,
    func,
    inspect,
    select,
    table,
    update,
)

from .dialects import for_database
from .dialects.base import check_user_key, is_user_key_object, user_key_index_name
from .exceptions import ConfigurationError
from .models import DEFAULT_TABLE_NAME, EXPIRES, EXPIRES_AT, MYSQL_DIALECTS, session_table
from .urls import driver_url

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from alembic.config import Config
    from alembic.migration import MigrationContext, MigrationInfo
    from sqlalchemy import Executable

    from .dialects.base import SQLDialect

# The package's Alembic environment (env.py) and revisions (versions/).
SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
# Where the package's revisions record how far a database has got: a table of our own, so that an
# application's Alembic project on the same database keeps its `alembic_version` to itself.
VERSION_TABLE = "alembic_version_fastapi_prisma_session"
# PostgreSQL cuts longer identifiers short, and Alembic would then not find its version table again.
MAX_IDENTIFIER_LENGTH = 63
# Where the package's env.py finds what `config()` was given (`Config.attributes`) and, in an ini file or
# with `alembic -x table_name=...`, the session table's name.
URL_ATTRIBUTE = "fastapi_prisma_session.database_url"
TABLE_NAME_ATTRIBUTE = "fastapi_prisma_session.table_name"
TABLE_NAME_OPTION = "table_name"
# The same for the expiry column's name: "expiresAt" (prisma-session-store 3.x) or "expires" (2.x).
EXPIRES_COLUMN_ATTRIBUTE = "fastapi_prisma_session.expires_column"
EXPIRES_COLUMN_OPTION = "expires_column"
# `migrate --user-key KEY` / `--drop-user-key KEY`, and `alembic -x user_key=KEY` (`-x drop_user_key=KEY`).
USER_KEY_ATTRIBUTE = "fastapi_prisma_session.user_key"
DROP_USER_KEY_ATTRIBUTE = "fastapi_prisma_session.drop_user_key"
# The version table's column that marks an adopted session table, and the attribute through which the
# first revision asks env.py to set it once Alembic has written the version row.
ADOPTED_COLUMN = "adopted"
ADOPTED_ATTRIBUTE = "fastapi_prisma_session.adopted"

logger = logging.getLogger("fastapi_prisma_session.migration")
# The `extra` of the records that say what became of the user-key index, and of the one that says that
# a long build is about to start (the CLI shows that one at once, on stderr).
INDEX_DONE = {"migration_step": "index"}
INDEX_PROGRESS = {"migration_step": "progress"}

__all__ = [
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "add_user_key_index",
    "alembic_url",
    "config",
    "current_expires_column",
    "current_table_name",
    "downgrade",
    "driver_url",
    "drop_user_key_index",
    "include_object",
    "metadata",
    "session_metadata",
    "upgrade",
    "version_table",
]


def upgrade(table_name: str = DEFAULT_TABLE_NAME, expires_column: str = EXPIRES_AT) -> None:
    """Create the session table and its indexes, as Prisma names them (in a revision's `upgrade()`).

    `expires_column="expires"` makes prisma-session-store 2.x's model, the seed README's."""
    table = session_table(table_name, expires_column=expires_column)
    primary_key = table.primary_key._copy()
    if op.get_context().dialect.name in MYSQL_DIALECTS:
        primary_key.name = None  # MySQL calls every primary key PRIMARY, and warns about any other name
    op.create_table(
        table.name,
        *(column._copy() for column in table.columns),
        primary_key,
        **table.kwargs,  # the character set and collation on MySQL
    )
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        op.create_index(str(index.name), table.name, [c.name for c in index.columns], unique=index.unique)


def add_user_key_index(key: str, table_name: str = DEFAULT_TABLE_NAME) -> None:
    """Add the index the store's `user_key=key` option looks users up in (in a revision's `upgrade()`):
    on PostgreSQL a function of `data` and an index on it, on SQLite an index on a JSON expression, on
    MySQL and MariaDB a generated column and an index on it. Rows of any content stay writable. Does
    nothing where it is there already (offline, with `--sql`, the plain statements are printed)."""
    for statement in _user_key_ddl(key, table_name)[0]:
        op.execute(statement)


def drop_user_key_index(key: str, table_name: str = DEFAULT_TABLE_NAME) -> None:
    """Remove what `add_user_key_index` added (in a revision's `downgrade()`); nothing if it is gone."""
    for statement in _user_key_ddl(key, table_name)[1]:
        op.execute(statement)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None
) -> bool:
    """For an env.py's `context.configure(include_object=migration.include_object)`: leaves the user-key
    index (and on MySQL its generated column) out of `alembic check` and `--autogenerate`, which would
    otherwise propose to drop them (the model does not describe them: Prisma's table has neither)."""
    table = getattr(getattr(obj, "table", None), "name", None)
    return not (
        reflected
        and compare_to is None
        and name is not None
        and table is not None
        and is_user_key_object(type_, name, table)
    )


def _user_key_ddl(key: str, table_name: str) -> tuple[list[Executable], list[Executable]]:
    # Offline (`--sql`), the plain statements: a script to run once, or to paste into a Prisma migration.
    return _sql(table_name).user_key_ddl(check_user_key(key), if_exists=not op.get_context().as_sql)


def _sql(table_name: str) -> SQLDialect:
    """The statements of the database the revisions run on, for the session table `table_name`."""
    return for_database(op.get_context().dialect.name, session_table(table_name), prune_batch_size=1)


def downgrade(table_name: str = DEFAULT_TABLE_NAME) -> None:
    """Drop the session table (in a revision's `downgrade()`): the one `upgrade()` created."""
    op.drop_table(table_name)


def adopt(table_name: str, expires_column: str) -> None:
    """Take on the session table that is already there (in the first revision's `upgrade()`, online): if
    it has the session table's columns, mark it adopted; otherwise raise `CommandError` and change nothing.
    """
    from alembic import context

    bind = op.get_bind()
    version = version_table(table_name)
    problem = _not_a_session_table(inspect(bind).get_columns(table_name), table_name, expires_column)
    if problem:
        if not op.get_context().impl.transactional_ddl:
            # Alembic has just created the version table for this run, and only a rollback would take it
            # away on PostgreSQL: on SQLite and MySQL the refused run would leave it behind, empty.
            op.drop_table(version)
        raise CommandError(problem)
    if ADOPTED_COLUMN not in {found["name"] for found in inspect(bind).get_columns(version)}:
        op.add_column(version, Column(ADOPTED_COLUMN, Boolean(), nullable=True))
    context.config.attributes[ADOPTED_ATTRIBUTE] = True


def record_adoption(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Mark the version row of an adopted table: env.py's `on_version_apply`, which Alembic calls once it
    has written the row, in the same transaction as the revision."""
    from alembic import context

    if step.is_upgrade and context.config.attributes.pop(ADOPTED_ATTRIBUTE, False):
        assert ctx.connection is not None  # adoption happens online only
        version = table(version_table(current_table_name()), column(ADOPTED_COLUMN))
        ctx.connection.execute(update(version).values({ADOPTED_COLUMN: True}))


def adopted(table_name: str) -> bool:
    """Whether the first revision adopted the session table rather than created it (in its downgrade()).

    Offline (`--sql`) the database cannot be asked, and the script drops the table as it would have."""
    context = op.get_context()
    if context.as_sql:
        return False
    bind = op.get_bind()
    name = version_table(table_name)
    if ADOPTED_COLUMN not in {found["name"] for found in inspect(bind).get_columns(name)}:
        return False
    marks: list[object] = list(
        bind.execute(select(column(ADOPTED_COLUMN)).select_from(table(name))).scalars()
    )
    return any(bool(mark) for mark in marks)


def leave_adopted(table_name: str) -> None:
    """The downgrade of an adopted table: the table and its rows stay; Alembic removes the version row."""
    logger.warning(
        'left in place: the table "%s" was there before the package\'s migration adopted it, so the '
        "downgrade keeps it and its rows and only removes the package's record of it",
        table_name,
    )


def _not_a_session_table(columns: list[Any], table_name: str, expires_column: str) -> str | None:
    """Why reflected `columns` are not those of a session table with `expires_column`; None if they are."""
    types = {found["name"]: found["type"] for found in columns}
    missing = [name for name in ("id", "sid", "data", expires_column) if name not in types]
    if missing:
        other = EXPIRES if expires_column == EXPIRES_AT else EXPIRES_AT
        hint = ""
        if missing == [expires_column] and other in types:
            hint = f"; it has {other}: use --expires-column {other} (alembic -x expires_column={other})"
        return (
            f'the table "{table_name}" exists and is not a session table: it has no column '
            f"{', '.join(missing)}{hint}; it was left as it is"
        )
    wrong = [
        f"{name} is {types[name]}" for name in ("id", "sid", "data") if not isinstance(types[name], String)
    ]
    if not isinstance(types[expires_column], DateTime):
        wrong.append(f"{expires_column} is {types[expires_column]}")
    if wrong:
        return (
            f'the table "{table_name}" exists and is not a session table: {", ".join(wrong)} (text and '
            "a date-time expected); it was left as it is"
        )
    return None


def session_metadata(table_name: str = DEFAULT_TABLE_NAME, expires_column: str = EXPIRES_AT) -> MetaData:
    """A `MetaData` holding the session table alone, under `table_name`: an env.py's `target_metadata`
    (or one of a list of them), so that `alembic check` sees the table as it should be."""
    found = MetaData()
    session_table(table_name, found, expires_column)
    return found


# The `target_metadata` for the default table, "Session".
metadata = session_metadata()


def alembic_url(url: str) -> str:
    """`url` as an Alembic env.py's `sqlalchemy.url` option: with the async driver (`postgresql://` →
    `postgresql+asyncpg://`, `sqlite://` → `sqlite+aiosqlite://`, `mysql://` → `mysql+asyncmy://`) and `%`
    doubled, as the ini syntax of `Config.set_main_option` wants it."""
    return driver_url(url).replace("%", "%%")


def version_table(table_name: str = DEFAULT_TABLE_NAME) -> str:
    """The version table of the package's revisions for the session table `table_name`.

    Each session table has its own, so that `migrate --table-name` runs the revisions once per table."""
    name = VERSION_TABLE if table_name == DEFAULT_TABLE_NAME else f"{VERSION_TABLE}_{table_name}"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise ConfigurationError(
            f'the table name "{table_name}" is too long for its version table "{name}" (at most '
            f"{MAX_IDENTIFIER_LENGTH} characters); choose a table name of at most "
            f"{MAX_IDENTIFIER_LENGTH - len(VERSION_TABLE) - 1} characters"
        )
    return name


def config(
    database_url: str | None = None,
    table_name: str = DEFAULT_TABLE_NAME,
    expires_column: str = EXPIRES_AT,
    *,
    user_key: str | None = None,
    drop_user_key: str | None = None,
) -> Config:
    """An Alembic `Config` for the package's own revisions, wherever the package is installed.

    `alembic.command.upgrade(migration.config(url), "head")` is what `python -m fastapi_prisma_session
    migrate` runs. With `user_key`, the run also adds that key's index (`add_user_key_index`), whether
    or not there were revisions to run; `drop_user_key` removes one.

    The URL may be plain (`postgresql://`, `sqlite://`, `mysql://`) or name its driver; without one the
    environment reads `DATABASE_URL` (enough for `--sql`, which only needs the database's kind)."""
    from alembic.config import Config

    version_table(table_name)  # a name too long fails here, before any connection
    found = Config()
    found.set_main_option("script_location", str(SCRIPT_LOCATION))
    found.attributes[URL_ATTRIBUTE] = database_url
    found.attributes[TABLE_NAME_ATTRIBUTE] = table_name
    found.attributes[EXPIRES_COLUMN_ATTRIBUTE] = expires_column
    found.attributes[USER_KEY_ATTRIBUTE] = user_key and check_user_key(user_key)
    found.attributes[DROP_USER_KEY_ATTRIBUTE] = drop_user_key and check_user_key(drop_user_key)
    return found


def current_table_name() -> str:
    """The session table the package's revisions work on, while they run: the one `config()` was given,
    else `alembic -x table_name=...`, else the `table_name` option of alembic.ini, else "Session"."""
    return _current(TABLE_NAME_ATTRIBUTE, TABLE_NAME_OPTION, DEFAULT_TABLE_NAME)


def current_expires_column() -> str:
    """The expiry column the package's revisions create, while they run: the one `config()` was given,
    else `alembic -x expires_column=...`, else the `expires_column` option of alembic.ini, else
    "expiresAt"."""
    return _current(EXPIRES_COLUMN_ATTRIBUTE, EXPIRES_COLUMN_OPTION, EXPIRES_AT)


def _current(attribute: str, option: str, default: str) -> str:
    from alembic import context

    given = context.config.attributes.get(attribute)
    if given:
        return str(given)
    x_arguments = context.get_x_argument(as_dictionary=True)
    return str(x_arguments.get(option) or context.config.get_main_option(option) or default)


def user_key_steps() -> None:
    """Add or remove the user-key index as `config()` or `alembic -x user_key=KEY` (`-x
    drop_user_key=KEY`) asked, after the revisions, in the same transaction (env.py calls this). It is
    not a revision: the index can be added to a table at head, and dropped again, at any time."""
    from alembic import context
    from alembic.operations import Operations

    x_arguments = context.get_x_argument(as_dictionary=True)
    add = context.config.attributes.get(USER_KEY_ATTRIBUTE) or x_arguments.get("user_key")
    drop = context.config.attributes.get(DROP_USER_KEY_ATTRIBUTE) or x_arguments.get("drop_user_key")
    with Operations.context(context.get_context()):
        if drop:
            _reported(drop, current_table_name(), adding=False)
        if add:
            _reported(add, current_table_name(), adding=True)


def _reported(key: str, table_name: str, *, adding: bool) -> None:
    """Add (or drop) the user-key index, and log what it took: "building index ... on "Session" (N
    rows)…" before a build, then what was built in how long, or that there was nothing to do."""
    work = add_user_key_index if adding else drop_user_key_index
    context = op.get_context()
    if context.as_sql:
        work(key, table_name)
        return
    bind = op.get_bind()
    index = user_key_index_name(table_name, key)
    there = bool(bind.execute(_sql(table_name).user_key_index_exists(key)).scalar())
    # Run even when the index is (or is not) there: it finishes what an interrupted run left (on MySQL,
    # the generated column without its index), and does nothing otherwise.
    if there == adding:
        work(key, table_name)
        state = "already there" if there else "not there"
        logger.info('index "%s" %s: nothing to do', index, state, extra=INDEX_DONE)
        return
    if not adding:
        work(key, table_name)
        logger.info('dropped index "%s" from "%s"', index, table_name, extra=INDEX_DONE)
        return
    rows = int(bind.execute(select(func.count()).select_from(table(table_name))).scalar() or 0)
    logger.info('building index "%s" on "%s" (%d rows)…', index, table_name, rows, extra=INDEX_PROGRESS)
    started = time.monotonic()
    work(key, table_name)
    elapsed = time.monotonic() - started
    built = 'built index "%s" on "%s" (%d rows) in %.1f s'
    logger.info(built, index, table_name, rows, elapsed, extra=INDEX_DONE)
