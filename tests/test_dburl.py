"""The store reads its URL without SQLAlchemy (dburl.py, the drivers' connect_params) exactly as
SQLAlchemy's make_url and its dialects read it."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from fastapi_prisma_session.dburl import DatabaseURL
from fastapi_prisma_session.dialects.mysql.connection import connect_params as mysql_params
from fastapi_prisma_session.dialects.postgresql.driver import connect_params as postgresql_params
from fastapi_prisma_session.dialects.sqlite.driver import connect_params as sqlite_params
from fastapi_prisma_session.exceptions import ConfigurationError

URLS = [
    "postgresql+asyncpg://u@127.0.0.1/app",
    "postgresql+asyncpg://u:p%40ss%3Aw%2Fd@db.example.com:6543/app?ssl=require",
    "postgresql+asyncpg://u@[::1]:5432/app?application_name=a%20b&ssl=verify-full",
    "postgresql+asyncpg://u@h/app?host=h1:5432&host=h2:5433",
    "postgresql+asyncpg://u@h/app?server_settings=x&x=1&x=2",
    "postgresql+asyncpg:///app",
    "mysql+asyncmy://root@127.0.0.1:3306/app",
    "mysql+asyncmy://root:secret@127.0.0.1/app?charset=utf8mb4",
    "mysql+asyncmy://root@127.0.0.1/app?ssl_ca=/ca.pem&connect_timeout=3",
    "mariadb+asyncmy://u:p@h/db",
    "sqlite+aiosqlite:///sessions.db",
    "sqlite+aiosqlite:////tmp/sessions.db",
    "sqlite+aiosqlite:///file:s.db?mode=ro&uri=true",
    "sqlite+aiosqlite://",
    "sqlite+aiosqlite:///:memory:",
]


@pytest.mark.parametrize("text", URLS)
def test_a_url_is_read_as_make_url_reads_it(text: str) -> None:
    ours, theirs = DatabaseURL.parse(text), make_url(text)
    for part in ("drivername", "username", "password", "host", "port", "database"):
        assert getattr(ours, part) == getattr(theirs, part), part
    assert dict(ours.query) == dict(theirs.query)
    assert ours.get_backend_name() == theirs.get_backend_name()
    assert ours.get_driver_name() == theirs.get_driver_name()
    assert ours.render() == theirs.render_as_string(hide_password=False)
    assert ours.render(hide_password=True) == theirs.render_as_string(hide_password=True)
    assert ours.translate_connect_args(username="user") == theirs.translate_connect_args(username="user")


@pytest.mark.parametrize("text", [url for url in URLS if url.startswith("postgresql")])
def test_asyncpg_is_given_what_sqlalchemy_gives_it(text: str) -> None:
    theirs = make_url(text)
    assert postgresql_params(DatabaseURL.parse(text)) == theirs.get_dialect()().create_connect_args(theirs)[1]


@pytest.mark.parametrize("text", [url for url in URLS if "asyncmy" in url])
def test_asyncmy_is_given_what_sqlalchemy_gives_it(text: str) -> None:
    theirs = make_url(text)
    assert mysql_params(DatabaseURL.parse(text)) == theirs.get_dialect()().create_connect_args(theirs)[1]


@pytest.mark.parametrize("text", [url for url in URLS if url.startswith("sqlite")])
def test_sqlite_is_given_what_sqlalchemy_gives_it(text: str) -> None:
    theirs = make_url(text)
    arguments, options = theirs.get_dialect()().create_connect_args(theirs)
    ours_arguments, ours_options = sqlite_params(DatabaseURL.parse(text))
    assert ours_arguments == list(arguments)
    # What the driver reads of them: the file, whether it is a URI, the busy timeout.
    for name in ("uri", "timeout"):
        assert ours_options.get(name) == options.get(name)


@pytest.mark.parametrize("text", ["not a url", "postgresql://u@h:port/app", "://nothing"])
def test_a_url_that_cannot_be_read_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="not a database URL"):
        DatabaseURL.parse(text)
