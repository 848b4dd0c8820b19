"""The postgres extractor and loader through etl_core's conformance suites, with the plugin's
type mapping (README.md) as type cases."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import uuid

import pyarrow as pa
import pytest
from psycopg import sql

from etl_core.testing import SECRET_MARKER, ExtractorConformance, LoaderConformance, TypeCase

pytestmark = pytest.mark.spark

UTC = dt.UTC
D = decimal.Decimal
STAMP = dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
UUID = "6f1c1b5e-8a4e-4d38-9a53-3b8f4c2b7a10"

TYPE_CASES = [
    TypeCase("c_int2", "smallint", (1, -32768, 32767, None), "int16"),
    TypeCase("c_int4", "integer", (1, -(2**31), 2**31 - 1, None), "int32"),
    TypeCase("c_int8", "bigint", (1, -(2**63), 2**63 - 1, None), "int64"),
    TypeCase(
        "c_numeric",
        "numeric(12,3)",
        (D("123456789.123"), D("-0.001"), D("0.000"), None),
        pa.decimal128(12, 3),
    ),
    TypeCase(  # read as its unscaled int8 (precision <= 18): the widest and the narrowest
        "c_numeric18",
        "numeric(18,2)",
        (D("9999999999999999.99"), D("-9999999999999999.99"), D("-0.01"), None),
        pa.decimal128(18, 2),
    ),
    TypeCase(  # precision 19..38: read as numeric, decoded from text
        "c_numeric30",
        "numeric(30,5)",
        (D("1234567890123456789012345.12345"), D("-0.00001"), None),
        pa.decimal128(30, 5),
    ),
    TypeCase(
        "c_numeric_any",
        "numeric",
        ("12345678901234567890.123456789", "-1.5", "0", None),
        "string",
        native=(D("12345678901234567890.123456789"), D("-1.5"), D("0"), None),
    ),
    TypeCase("c_real", "real", (1.5, -2.25, 0.0, None), "float32"),
    TypeCase("c_double", "double precision", (1.5e300, -2.25, 0.1, None), "float64"),
    TypeCase("c_bool", "boolean", (True, False, None), "bool_"),
    TypeCase("c_text", "text", ("héllo", "", "a\tb\nc", None), "string"),
    TypeCase("c_varchar", "varchar(10)", ("abc", "", None), "string"),
    TypeCase("c_char", "char(3)", ("abc", "ab ", None), "string"),
    TypeCase("c_date", "date", (dt.date(2024, 2, 29), dt.date(1, 1, 1), None), "date32"),
    TypeCase(
        "c_time",
        "time",
        ("10:11:12.5", "00:00:00", "23:59:59.999999", None),
        "string",
        native=(dt.time(10, 11, 12, 500000), dt.time(0), dt.time(23, 59, 59, 999999), None),
    ),
    TypeCase(
        "c_timestamp", "timestamp", (STAMP, dt.datetime(1970, 1, 1), None), pa.timestamp("us")
    ),
    TypeCase(
        "c_timestamptz",
        "timestamptz",
        (STAMP.replace(tzinfo=UTC), dt.datetime(1999, 12, 31, 22, tzinfo=UTC), None),
        pa.timestamp("us", tz="UTC"),
    ),
    TypeCase(
        "c_interval",
        "interval",
        ("1 day 02:03:04", "00:00:01.5", None),
        "string",
        native=(
            dt.timedelta(days=1, hours=2, minutes=3, seconds=4),
            dt.timedelta(seconds=1.5),
            None,
        ),
    ),
    TypeCase("c_uuid", "uuid", (UUID, None), "string", native=(uuid.UUID(UUID), None)),
    TypeCase("c_json", "json", ('{"a":1, "b":[true]}', None), "string"),
    TypeCase("c_jsonb", "jsonb", ('{"a": 1, "b": [true]}', None), "string"),
    TypeCase("c_int_array", "bigint[]", ([1, None, 3], [], None), pa.list_(pa.int64())),
    TypeCase("c_text_array", "text[]", (["a", None, "b c"], None), pa.list_(pa.string())),
    TypeCase("c_bytea", "bytea", (b"\x00\x01\xff", b"", None), "binary"),
    TypeCase("c_enum", "{schema}.mood", ("ok", "sad", None), "string"),
]


class PostgresHooks:
    type_cases = TYPE_CASES
    component = "postgres"

    @pytest.fixture(autouse=True)
    def _database(self, pg, pg_schema, request):
        self.conn, self.schema, self.request = pg, pg_schema, request
        pg.execute(
            sql.SQL("CREATE TYPE {}.mood AS ENUM ('ok', 'sad')").format(sql.Identifier(pg_schema))
        )

    @pytest.fixture
    def target(self, pg_schema):
        return f"{pg_schema}.t_{uuid.uuid4().hex[:8]}"

    def credential_values(self):
        return {"user": os.environ.get("ETL_TEST_PG_USER", "postgres"), "password": SECRET_MARKER}

    def refused_credentials(self):
        # the usual server trusts every local login: a wrong password needs one that checks
        cluster = self.request.getfixturevalue("password_postgres")
        refused = {"user": cluster.superuser, "password": f"wrong-{SECRET_MARKER}"}
        return refused, {"connection": {**cluster.connection(), "connect_timeout": 5}}

    @staticmethod
    def connection():
        return {
            "host": os.environ.get("ETL_TEST_PG_HOST", "127.0.0.1"),
            "port": int(os.environ.get("ETL_TEST_PG_PORT", "5432")),
            "database": os.environ.get("ETL_TEST_PG_DATABASE", "test"),
            "sslmode": "disable",
        }

    def unreachable_options(self):
        return {"connection": {**self.connection(), "port": 1, "connect_timeout": 2}}

    def table(self, target):
        schema, name = target.split(".")
        return sql.Identifier(schema, name)

    def create_target(self, target, columns, rows=(), key=()):
        defs = [
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t.format(schema=self.schema)))
            for n, t in columns
        ]
        if key:
            defs.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
            )
        self.conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(self.table(target), sql.SQL(", ").join(defs))
        )
        self.add_rows(target, rows, [n for n, _ in columns])

    def add_rows(self, target, rows, names=("id", "name", "amount")):
        with self.conn.cursor() as cursor:
            for row in rows:
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        self.table(target),
                        sql.SQL(", ").join(map(sql.Identifier, names)),
                        sql.SQL(", ").join(sql.Placeholder() * len(names)),
                    ),
                    [row.get(n) for n in names],
                )

    def read_target(self, target):
        types = dict(
            self.conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [str(self.table(target).as_string(self.conn))],
            ).fetchall()
        )
        columns = [
            sql.SQL("{}::text AS {}").format(sql.Identifier(n), sql.Identifier(n))
            if t in ("json", "jsonb")
            else sql.Identifier(n)
            for n, t in types.items()
        ]
        cursor = self.conn.execute(
            sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(columns), self.table(target))
        )
        names = [d.name for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def staging_leftovers(self, target):
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = %s AND tablename LIKE 'etl_stg_%%'",
                [self.schema],
            ).fetchall()
        ]


class TestPostgresLoaderConformance(PostgresHooks, LoaderConformance):
    reports_merged = True

    def sink_block(self, target, **options):
        return {"type": "postgres", "table": target, "connection": self.connection(), **options}

    def failing_sink_block(self, target):
        return self.sink_block(f"{self.schema}.missing_table", mode="append")


class TestPostgresExtractorConformance(PostgresHooks, ExtractorConformance):
    def source_block(self, target, **options):
        return {"type": "postgres", "table": target, "connection": self.connection(), **options}

    def partition_options(self, column, partitions):
        return {"partition_column": column, "partitions": partitions}

    def incremental_options(self):
        return {"column": "id"}

    def failing_source_block(self, target):
        return self.source_block(target, where="no_such_column > 1")
