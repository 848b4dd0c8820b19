"""Fixtures for the mysql plugin's tests: a database of its own per test on the local MariaDB
(127.0.0.1:3306, root without password; shared/SERVICES.md)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from etl_core import Pipeline, RunMetrics

HOST = os.environ.get("ETL_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("ETL_TEST_MYSQL_PORT", "3306"))
ROOT = os.environ.get("ETL_TEST_MYSQL_USER", "root")


def root_connection(database: str | None = None) -> Any:
    return pymysql.connect(
        host=HOST,
        port=PORT,
        user=ROOT,
        password="",
        database=database,
        autocommit=True,
        init_command="SET time_zone = '+00:00'",
        local_infile=True,
    )


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[None]:
    """The server, with LOAD DATA LOCAL INFILE allowed."""
    try:
        conn = root_connection()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not running on {HOST}:{PORT}: {exc} (see shared/SERVICES.md)")
    with conn.cursor() as cursor:
        cursor.execute("SET GLOBAL local_infile = 1")
    conn.close()
    yield


class Database:
    """One test's database, with helpers to run SQL in it."""

    def __init__(self, name: str):
        self.name = name

    def execute(self, *statements: str) -> None:
        conn = root_connection(self.name)
        try:
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            conn.close()

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        conn = root_connection(self.name)
        try:
            with conn.cursor() as cursor:
                cursor.execute(query)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def tables(self) -> set[str]:
        return {row[0] for row in self.rows("SHOW TABLES")}

    def connection(self) -> dict[str, Any]:
        return {"host": HOST, "port": PORT, "database": self.name}


@pytest.fixture
def mysql_db(mysql_server: None) -> Iterator[Database]:
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    conn = root_connection()
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield Database(name)
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture
def mysql_run(etl_spark: Any, tmp_path: Path) -> Callable[..., RunMetrics]:
    """Run a pipeline mapping with the installed plugins, on the shared session."""

    def run(pipeline: dict[str, Any], run_id: str | None = None) -> Any:
        return Pipeline(pipeline, base_dir=tmp_path).run(run_id=run_id)

    return run


@pytest.fixture(scope="session")
def mysql_connect(mysql_server: None) -> Callable[..., Any]:
    """``mysql_connect(database=None)``: a root connection (autocommit, UTC)."""
    return root_connection
