"""The core's conformance suites, against the real MariaDB, as a user with a real password."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pymysql.cursors
import pytest

from etl_core.testing import ExtractorConformance, LoaderConformance, TypeCase

pytestmark = pytest.mark.spark

USER = "etl_conformance"
PASSWORD = "etl-conformance-s3cr3t-my"
BASIC_NAMES = ("id", "name", "amount")

UTC = dt.UTC
TYPE_CASES = [
    TypeCase("i8", "TINYINT", (1, None, -128), "int8"),
    TypeCase("u32", "INT UNSIGNED", (4294967295, None), "int64"),
    TypeCase(
        "u64",
        "BIGINT UNSIGNED",
        (decimal.Decimal(18446744073709551615), None),
        pa.decimal128(20, 0),
        native=(18446744073709551615, None),
    ),
    TypeCase("dec", "DECIMAL(20,4)", (decimal.Decimal("-1234.5678"), None), pa.decimal128(20, 4)),
    TypeCase("f32", "FLOAT", (1.5, None), "float32"),
    TypeCase("f64", "DOUBLE", (2.000000001, None), "float64"),
    TypeCase("flag", "TINYINT(1)", (True, False, None), "bool_", native=(1, 0, None)),
    TypeCase("vc", "VARCHAR(20)", ('héllo, "x"', "", None), "string"),
    TypeCase("ch", "CHAR(3)", ("ab", None), "string"),
    TypeCase("tx", "TEXT", ("a\nb\\c", None), "string"),
    TypeCase("d", "DATE", (dt.date(2024, 2, 29), None), "date32"),
    TypeCase(
        "tm",
        "TIME",
        ("13:14:15", None),
        "string",
        native=(dt.timedelta(hours=13, minutes=14, seconds=15), None),
    ),
    TypeCase("dtm", "DATETIME(6)", (dt.datetime(2024, 1, 2, 3, 4, 5, 6), None), pa.timestamp("us")),
    TypeCase(
        "ts",
        "TIMESTAMP(6) NULL",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None),
        pa.timestamp("us", tz="UTC"),
        native=(dt.datetime(2024, 1, 2, 3, 4, 5, 6), None),
    ),
    TypeCase("j", "JSON", ('{"a": [1, null]}', None), "string"),
    TypeCase("bl", "BLOB", (b'\x00\xff,"\n', None), "binary"),
    TypeCase("e", "ENUM('a','b')", ("b", None), "string"),
]


@pytest.fixture(scope="module")
def conformance_user(mysql_connect) -> Iterator[None]:
    conn = mysql_connect()
    with conn.cursor() as cursor:
        for host in ("%", "localhost"):
            cursor.execute(f"CREATE OR REPLACE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute(f"GRANT ALL ON `etl\\_test\\_%`.* TO '{USER}'@'{host}'")
    yield
    with conn.cursor() as cursor:
        for host in ("%", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS '{USER}'@'{host}'")
    conn.close()


class MariaDBHooks:
    type_cases = TYPE_CASES

    @pytest.fixture
    def target(self, mysql_db, mysql_connect, conformance_user) -> str:
        self.db, self.connect = mysql_db, mysql_connect
        return f"t_{uuid.uuid4().hex[:8]}"

    def credential_values(self) -> dict[str, str]:
        return {"user": USER, "password": PASSWORD}

    def refused_credentials(self) -> tuple[dict[str, str], dict[str, Any]]:
        return {"password": f"wrong-{PASSWORD}"}, {}  # MariaDB checks passwords

    def create_target(
        self,
        target: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Mapping[str, Any]] = (),
        key: Sequence[str] = (),
    ) -> None:
        parts = [f"`{name}` {kind}" for name, kind in columns]
        if key:
            parts.append(f"PRIMARY KEY ({', '.join(f'`{k}`' for k in key)})")
        self.db.execute(f"CREATE TABLE `{target}` ({', '.join(parts)})")
        self.add_rows(target, rows, [name for name, _ in columns])

    def add_rows(
        self, target: str, rows: Sequence[Mapping[str, Any]], names: Sequence[str] = BASIC_NAMES
    ) -> None:
        if rows:
            conn = self.connect(self.db.name)
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO `{target}` ({', '.join(f'`{n}`' for n in names)}) "
                    f"VALUES ({', '.join(['%s'] * len(names))})",
                    [tuple(row.get(n) for n in names) for row in rows],
                )
            conn.close()

    def read_target(self, target: str) -> list[dict[str, Any]]:
        conn = self.connect(self.db.name)
        with conn.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(f"SELECT * FROM `{target}`")
            rows = list(cursor.fetchall())
        conn.close()
        return rows

    def staging_leftovers(self, target: str) -> list[str]:
        return sorted(t for t in self.db.tables() if t.startswith("etl_stg_"))

    def unreachable_options(self) -> dict[str, Any]:
        down = {**self.db.connection(), "port": 1, "options": {"connect_timeout": 2}}
        return {"connection": down}

    def block(self, target: str, **options: Any) -> dict[str, Any]:
        return {"type": "mysql", "connection": self.db.connection(), "table": target, **options}


class TestMariaDBLoader(MariaDBHooks, LoaderConformance):
    reports_merged = True
    component = "mysql"

    def sink_block(self, target: str, **options: Any) -> dict[str, Any]:
        return self.block(target, **options)

    def failing_sink_block(self, target: str) -> dict[str, Any]:
        return self.block(f"{target}_missing", mode="append")


class TestMariaDBExtractor(MariaDBHooks, ExtractorConformance):
    component = "mysql"

    def source_block(self, target: str, **options: Any) -> dict[str, Any]:
        return self.block(target, **options)

    def partition_options(self, column: str, partitions: int) -> dict[str, Any]:
        return {"partition_column": column, "partitions": partitions}

    def incremental_options(self) -> dict[str, Any]:
        return {"column": "id"}

    def failing_source_block(self, target: str) -> dict[str, Any]:
        return self.block(f"{target}_missing")
