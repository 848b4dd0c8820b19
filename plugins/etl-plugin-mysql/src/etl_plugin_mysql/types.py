"""The type mapping between MySQL/MariaDB columns and Spark (README: "Type mapping").

Reading, each column gets a SQL expression that connectorx can fetch exactly (decimals and
TIME as text, TIMESTAMP converted to UTC) and a Spark type; the reader casts connectorx's Arrow
arrays to that type. Writing, each Spark type gets the DDL used by ``create_table`` and
``add_columns``.
"""

from __future__ import annotations

import attrs

from etl_plugin_mysql.client import parse_column_type, quote_name

_INTEGER = {"tinyint": 0, "smallint": 1, "mediumint": 2, "int": 2, "integer": 2, "bigint": 3}
_SIGNED = ["tinyint", "smallint", "int", "bigint"]
_UNSIGNED = ["smallint", "int", "bigint", "decimal(20,0)"]
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"}
_TEXT |= {"uuid", "inet4", "inet6"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}


@attrs.frozen
class ReadColumn:
    name: str
    spark_type: str
    expression: str


def read_column(name: str, column_type: str) -> ReadColumn:
    """How to read one column declared as ``column_type`` (``SHOW COLUMNS``'s ``Type``)."""
    base, args, unsigned = parse_column_type(column_type)
    column = quote_name(name)
    as_is = column
    if base == "tinyint" and args.strip() == "1" and not unsigned:
        return ReadColumn(name, "boolean", as_is)
    if base in _INTEGER:
        if base == "mediumint":  # 24 bits, signed or not, fit an int
            return ReadColumn(name, "int", as_is)
        rank = _INTEGER[base]
        return ReadColumn(name, (_UNSIGNED if unsigned else _SIGNED)[rank], as_is)
    if base in ("decimal", "numeric", "dec", "fixed"):
        precision, _, scale = (args or "10,0").partition(",")
        p, s = int(precision), int(scale or 0)
        if p > 38:  # beyond Spark's decimal: kept exact as text
            return ReadColumn(name, "string", f"CAST({column} AS CHAR)")
        return ReadColumn(name, f"decimal({p},{s})", f"CAST({column} AS CHAR)")
    if base == "float":
        return ReadColumn(name, "float", as_is)
    if base in ("double", "real"):
        return ReadColumn(name, "double", as_is)
    if base == "bit":
        if (args or "1").strip() == "1":
            return ReadColumn(name, "boolean", f"CAST({column} AS UNSIGNED)")
        return ReadColumn(name, "decimal(20,0)", f"CAST({column} AS UNSIGNED)")
    if base == "year":
        return ReadColumn(name, "smallint", as_is)
    if base == "date":
        return ReadColumn(name, "date", as_is)
    if base == "datetime":
        return ReadColumn(name, "timestamp_ntz", as_is)
    if base == "timestamp":
        return ReadColumn(name, "timestamp", f"CONVERT_TZ({column}, @@session.time_zone, '+00:00')")
    if base == "time":  # a duration in MySQL (-838:59:59 to 838:59:59), kept as text
        return ReadColumn(name, "string", f"CAST({column} AS CHAR)")
    if base in _TEXT:
        return ReadColumn(name, "string", as_is)
    if base in _BINARY:
        return ReadColumn(name, "binary", as_is)
    return ReadColumn(name, "string", f"CAST({column} AS CHAR)")


def column_ddl(spark_type: str) -> str:
    """The MySQL column type for a Spark type (``DataType.simpleString()``); empty for the
    nested types (arrays, maps, structs), which the sink refuses."""
    simple = spark_type.lower()
    if simple.startswith("decimal"):
        return simple.upper()
    fixed = {
        "boolean": "BOOLEAN",
        "tinyint": "TINYINT",
        "smallint": "SMALLINT",
        "int": "INT",
        "bigint": "BIGINT",
        "float": "FLOAT",
        "double": "DOUBLE",
        "string": "LONGTEXT",
        "binary": "LONGBLOB",
        "date": "DATE",
        "timestamp": "TIMESTAMP(6) NULL",
        "timestamp_ntz": "DATETIME(6)",
    }
    return fixed.get(simple, "")
