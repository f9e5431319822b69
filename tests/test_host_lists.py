"""A URL listing several hosts, as libpq and Prisma write it, rewritten for SQLAlchemy the same way on
PostgreSQL and MySQL/MariaDB (dialects/host_lists.py): what each keeps, and what each refuses."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from fastapi_prisma_session import ConfigurationError
from fastapi_prisma_session.dialects import mysql, postgresql


@pytest.mark.parametrize(
    ("rewrite", "url", "hosts"),
    [
        (postgresql.sqlalchemy_url, "postgresql://u:pa/ss@h1,h2:5433/db", ("h1:5432", "h2:5433")),
        (mysql.sqlalchemy_url, "mysql://u:pa/ss@h1,h2:3307/db", ("h1", "h2:3307")),
    ],
)
def test_a_password_with_a_slash_stays_the_password(
    rewrite: object, url: str, hosts: tuple[str, ...]
) -> None:
    """The user and password end at the last `@` before the hosts: a slash in the password does not cut
    the URL there (libpq and SQLAlchemy read it so)."""
    rewritten = make_url(rewrite(url))  # type: ignore[operator]
    assert (rewritten.username, rewritten.password, rewritten.database) == ("u", "pa/ss", "db")
    assert rewritten.query["host"] == hosts


@pytest.mark.parametrize(
    ("rewrite", "url"),
    [
        (postgresql.sqlalchemy_url, "postgresql://u@h1,,h2/db"),
        (postgresql.sqlalchemy_url, "postgresql://u@h1,h2,/db"),
        (mysql.sqlalchemy_url, "mysql://u@h1,,h2/db"),
        (mysql.sqlalchemy_url, "mysql://u@,h1/db"),
    ],
)
def test_an_empty_entry_is_refused_with_the_right_form(rewrite: object, url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"empty entry .*: write it as host1:\d+,host2:\d+"):
        rewrite(url)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("rewrite", "url"),
    [
        (postgresql.sqlalchemy_url, "postgresql://u@h1:5432/db?sslmode=require"),
        (mysql.sqlalchemy_url, "mysql://u:p@h1:3306/db?charset=utf8mb4"),
        (mysql.sqlalchemy_url, "not a url"),
    ],
)
def test_a_url_with_one_host_is_left_as_it_is(rewrite: object, url: str) -> None:
    assert rewrite(url) == url  # type: ignore[operator]
