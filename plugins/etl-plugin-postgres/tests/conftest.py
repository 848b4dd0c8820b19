"""Fixtures for the postgres plugin's tests: the machine's PostgreSQL (../../shared/SERVICES.md),
one fresh schema per test, dropped at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_HOST = os.environ.get("ETL_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETL_TEST_PG_PORT", "5432"))
PG_DATABASE = os.environ.get("ETL_TEST_PG_DATABASE", "test")
PG_USER = os.environ.get("ETL_TEST_PG_USER", "postgres")


def connect() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=PG_USER, autocommit=True
    )


@pytest.fixture(scope="session")
def pg() -> Iterator[psycopg.Connection]:
    try:
        conn = connect()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}: {exc} (see shared/SERVICES.md)"
        )
    yield conn
    conn.close()


@pytest.fixture
def pg_schema(pg: psycopg.Connection) -> Iterator[str]:
    name = f"etl_t_{uuid.uuid4().hex[:10]}"
    pg.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A `credentials:` block serving user and password from the environment."""
    monkeypatch.setenv("ETL_TEST_PG_USER_VAR", PG_USER)
    monkeypatch.setenv("ETL_TEST_PG_PASSWORD_VAR", "not-checked-by-trust-auth")
    return {
        "pg": {
            "provider": "env",
            "fields": {"user": "ETL_TEST_PG_USER_VAR", "password": "ETL_TEST_PG_PASSWORD_VAR"},
        }
    }


def connection_block() -> dict:
    return {"host": PG_HOST, "port": PG_PORT, "database": PG_DATABASE, "sslmode": "disable"}


@pytest.fixture
def pg_connection_block() -> dict:
    return connection_block()
