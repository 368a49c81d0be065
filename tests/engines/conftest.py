"""PostgreSQL for the tests: one throwaway database a session, one fresh schema a test.

The server is 127.0.0.1:5432 as user postgres (CLAWGUARD_TEST_PG_URL overrides
it). A database `clawguard_test_<random>` is created for the session and
dropped at its end, its connections terminated first; `pg_url` gives each
test an empty schema of it (the url selects it with search_path), so tests
never see each other's rows. When the server cannot be reached the tests
that need it are skipped with the reason, except under CI (`CI=true`),
where that fails them: a CI run must not pass with PostgreSQL untested.
Tests in other folders import these fixtures (`from engines.conftest import ...`).
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from clawguard.runtime import config
from clawguard.store import contract, engines

SERVER_URL = os.environ.get(
    "CLAWGUARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def database_url(server_url: str, dbname: str, schema: str | None = None) -> str:
    """`server_url` pointed at another database, and with `schema` first on the search_path."""
    parts = urllib.parse.urlsplit(server_url)
    query = urllib.parse.parse_qsl(parts.query)
    if schema is not None:
        query.append(("options", f"-csearch_path={schema}"))
    return urllib.parse.urlunsplit(
        parts._replace(path="/" + dbname, query=urllib.parse.urlencode(query))
    )


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The server's admin url; skips (fails under CI) when PostgreSQL is unreachable."""
    try:
        psycopg.connect(SERVER_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = f"PostgreSQL is unreachable at {SERVER_URL}: {str(exc).strip()}"
        if under_ci():
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)
    return SERVER_URL


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """The url of a database made for this session, dropped (connections cut) at its end."""
    name = "clawguard_test_" + secrets.token_hex(4)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()", (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            ))


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A url whose search_path is an empty schema of its own, dropped after the test."""
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield database_url(pg_database, urllib.parse.urlsplit(pg_database).path[1:], schema)
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# --- the store under test: each contract test runs on SQLite and on PostgreSQL --------


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> config.StorageConfig:
    if request.param == "sqlite":
        return config.StorageConfig(path=str(tmp_path / "clawguard.db"))
    return config.StorageConfig(url=request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(settings: config.StorageConfig, clock: Any) -> AsyncIterator[contract.Store]:
    db = engines.open_store(settings, clock)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


# --- under CI, a PostgreSQL test that skipped for any reason fails the run ------------

_SKIPPED_PG: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.nodeid:
        _SKIPPED_PG.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if under_ci() and _SKIPPED_PG:
        terminalreporter.write_line(
            f"CI=true: {len(_SKIPPED_PG)} PostgreSQL test(s) skipped; that fails the run",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if under_ci() and _SKIPPED_PG and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
