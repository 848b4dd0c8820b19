"""The type mapping between PostgreSQL columns and Spark/Arrow (README: "Type mapping").

Reading, each column gets a select expression and a Spark type; writing, each staged column an
Arrow type that COPY takes directly (else it lands as text and is cast when published), and each
Spark type the DDL used by ``create_table`` and ``add_columns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from etl_plugin_postgres.client import PgColumn, ident

if TYPE_CHECKING:
    import pyarrow as pa

#: PostgreSQL base types read natively, by name → Spark DDL type
NATIVE_READ = {
    "int2": "SMALLINT",
    "int4": "INT",
    "int8": "BIGINT",
    "float4": "FLOAT",
    "float8": "DOUBLE",
    "bool": "BOOLEAN",
    "text": "STRING",
    "varchar": "STRING",
    "bpchar": "STRING",
    "name": "STRING",
    "date": "DATE",
    "timestamp": "TIMESTAMP_NTZ",
    "timestamptz": "TIMESTAMP",
    "bytea": "BINARY",
}

#: PostgreSQL types a loader can COPY Arrow into directly, by name → Arrow type name
NATIVE_WRITE = {
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "float4": "float32",
    "float8": "float64",
    "bool": "bool_",
    "text": "large_string",
    "varchar": "large_string",
    "bpchar": "large_string",
    "name": "large_string",
    "json": "large_string",
    "date": "date32",
    "bytea": "large_binary",
}


#: numeric(p, s) with p up to this is read as its unscaled integer (``int8``) and rebuilt as a
#: decimal on the executor: ADBC decodes numeric to text, which costs more than the rest of a
#: typical row (benchmarks/README.md)
UNSCALED_DIGITS = 18


def numeric_decimal(precision: int | None, scale: int | None) -> tuple[int, int] | None:
    if precision is None or precision > 38:
        return None
    return precision, scale or 0


def read_plan(column: PgColumn) -> tuple[str, str]:
    """(SQL select expression, Spark DDL type) for one column of a read."""
    quoted = ident(column.name)
    if column.typname in NATIVE_READ:
        return quoted, NATIVE_READ[column.typname]
    if column.typname == "numeric":
        decimal = numeric_decimal(column.precision, column.scale)
        if decimal and decimal[0] <= UNSCALED_DIGITS:  # exact: the column holds that scale
            return f"({quoted} * 1e{decimal[1]})::int8", f"DECIMAL({decimal[0]},{decimal[1]})"
        if decimal:
            return quoted, f"DECIMAL({decimal[0]},{decimal[1]})"
        return f"{quoted}::text", "STRING"
    if column.category == "A" and column.element in NATIVE_READ:
        element = NATIVE_READ[column.element]
        if element in ("BINARY",):
            return f"{quoted}::text[]", "ARRAY<STRING>"
        return quoted, f"ARRAY<{element}>"
    if column.category == "A":
        return f"{quoted}::text[]", "ARRAY<STRING>"
    # uuid, json, jsonb, time, timetz, interval, enums, inet, money, xml, ranges...: exact text
    return f"{quoted}::text", "STRING"


def write_arrow_type(column: PgColumn) -> pa.DataType | None:
    """The Arrow type an ingest batch must carry for ``column``, or ``None`` when the column
    lands as text in staging and is cast to its type when published."""
    import pyarrow as pa

    if column.typname in NATIVE_WRITE:
        return getattr(pa, NATIVE_WRITE[column.typname])()
    if column.category == "E":
        return pa.large_string()
    if column.typname == "timestamp":
        return pa.timestamp("us")
    if column.typname == "timestamptz":
        return pa.timestamp("us", tz="UTC")
    if column.typname == "numeric":
        decimal = numeric_decimal(column.precision, column.scale)
        return pa.decimal128(*decimal) if decimal else None
    if column.category == "A" and column.element in NATIVE_WRITE:
        return pa.list_(getattr(pa, NATIVE_WRITE[column.element])())
    return None


#: Spark simple type → PostgreSQL type, for ``create_table`` and ``add_columns``
SPARK_TO_PG = {
    "boolean": "boolean",
    "tinyint": "smallint",
    "byte": "smallint",
    "smallint": "smallint",
    "short": "smallint",
    "int": "integer",
    "integer": "integer",
    "bigint": "bigint",
    "long": "bigint",
    "float": "real",
    "double": "double precision",
    "string": "text",
    "binary": "bytea",
    "date": "date",
    "timestamp": "timestamptz",
    "timestamp_ntz": "timestamp",
    "void": "text",
}


def pg_type_of_spark(data_type: Any) -> str:
    """PostgreSQL DDL type for a Spark data type (``create_table``, ``add_columns``)."""
    from pyspark.sql.types import ArrayType, DecimalType

    if isinstance(data_type, DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    if isinstance(data_type, ArrayType):
        element = pg_type_of_spark(data_type.elementType)
        return "jsonb" if element == "jsonb" else element + "[]"  # arrays of structs: JSON
    simple = data_type.simpleString()
    if simple.startswith(("char", "varchar")):
        return "text"
    if simple in SPARK_TO_PG:
        return SPARK_TO_PG[simple]
    return "jsonb" if simple.startswith(("struct", "map")) else "text"
