"""Type mapping round trips: MariaDB → Spark → MariaDB keeps every value, NULLs included."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.spark

COLUMNS = """
    id INT PRIMARY KEY,
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT,
    mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
    d DECIMAL(20,4), d38 DECIMAL(38,10), d65 DECIMAL(65,30), f FLOAT, db DOUBLE,
    b1 TINYINT(1), bo BOOLEAN, bit1 BIT(1), vc VARCHAR(20), c CHAR(5), tx TEXT,
    dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, j JSON,
    bl BLOB, bn BINARY(4), vb VARBINARY(10), e ENUM('a','b'), y YEAR
"""
VALUES = (
    "(2, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, "
    "-9223372036854775808, 18446744073709551615, 1234567890123456.1234, "
    "1234567890123456789012345678.0123456789, "
    "12345678901234567890123456789012345.123456789012345678901234567890, "
    "1.5, 2.000000000000001, 1, 0, b'1', 'héllo \"q\", \\\\n', 'ab', 'line1\\nline2,\\ttab', "
    "'2024-02-29', '-838:59:59.000001', '9999-12-31 23:59:59.999999', "
    "'2038-01-19 03:14:07.123456', '{\"a\": [1, null]}', x'00ff0a2c22', x'01020304', x'', "
    "'b', 2155)"
)


def table(db, name: str) -> None:
    db.execute(f"CREATE TABLE {name} ({COLUMNS})")


def test_every_type_round_trips_through_spark(mysql_db, mysql_run, tmp_path):
    table(mysql_db, "src")
    table(mysql_db, "dst")
    mysql_db.execute("INSERT INTO src (id) VALUES (1)", f"INSERT INTO src VALUES {VALUES}")
    conn = mysql_db.connection()
    mysql_run(
        {
            "name": "types",
            "sources": {"s": {"type": "mysql", "connection": conn, "table": "src"}},
            "sinks": {
                "db": {
                    "type": "mysql",
                    "input": "s",
                    "connection": conn,
                    "table": "dst",
                    "mode": "append",
                },
                "pq": {"type": "files", "input": "s", "path": "out"},
            },
        }
    )
    assert mysql_db.rows("SELECT * FROM dst ORDER BY id") == mysql_db.rows(
        "SELECT * FROM src ORDER BY id"
    )
    null_row = mysql_db.rows("SELECT * FROM dst WHERE id = 1")[0]
    assert null_row[1:] == (None,) * (len(null_row) - 1)

    parquet = pq.read_table(tmp_path / "out").sort_by("id")
    types = {f.name: str(f.type) for f in parquet.schema if f.name != "ts"}  # files sink's choice
    assert types == {
        "id": "int32",
        "ti": "int8",
        "tu": "int16",
        "si": "int16",
        "su": "int32",
        "mi": "int32",
        "mu": "int32",
        "i": "int32",
        "iu": "int64",
        "bi": "int64",
        "bu": "decimal128(20, 0)",
        "d": "decimal128(20, 4)",
        "d38": "decimal128(38, 10)",
        "d65": "string",
        "f": "float",
        "db": "double",
        "b1": "bool",
        "bo": "bool",
        "bit1": "bool",
        "vc": "string",
        "c": "string",
        "tx": "string",
        "dt": "date32[day]",
        "tm": "string",
        "dtm": "timestamp[us]",
        "j": "string",
        "bl": "binary",
        "bn": "binary",
        "vb": "binary",
        "e": "string",
        "y": "int16",
    }
    row = parquet.to_pylist()[1]
    assert row["bu"] == decimal.Decimal(18446744073709551615)
    assert row["d38"] == decimal.Decimal("1234567890123456789012345678.0123456789")
    assert row["d65"] == "12345678901234567890123456789012345.123456789012345678901234567890"
    assert row["b1"] is True and row["bo"] is False and row["bit1"] is True
    assert row["tm"] == "-838:59:59.000001"
    assert row["dtm"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert row["ts"].replace(tzinfo=None) == dt.datetime(2038, 1, 19, 3, 14, 7, 123456)
    assert row["bl"] == b'\x00\xff\n,"' and row["vb"] == b""
    assert row["vc"] == 'héllo "q", \\n' and row["tx"] == "line1\nline2,\ttab"


def test_create_table_from_spark_types(mysql_db, mysql_run):
    table(mysql_db, "src")
    mysql_db.execute(f"INSERT INTO src VALUES {VALUES}", "INSERT INTO src (id) VALUES (1)")
    conn = mysql_db.connection()
    mysql_run(
        {
            "name": "types",
            "sources": {
                "s": {
                    "type": "mysql",
                    "connection": conn,
                    "table": "src",
                    "columns": ["id", "bu", "d", "b1", "vc", "dtm", "ts", "bl"],
                }
            },
            "sinks": {
                "db": {
                    "type": "mysql",
                    "input": "s",
                    "connection": conn,
                    "table": "made",
                    "create_table": True,
                    "mode": "error",
                }
            },
        }
    )
    assert mysql_db.rows("SELECT * FROM made ORDER BY id") == mysql_db.rows(
        "SELECT id, bu, d, b1, vc, dtm, ts, bl FROM src ORDER BY id"
    )
