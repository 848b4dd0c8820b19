"""Moving rows on the executors through a Spark Python data source (``pyspark.sql.datasource``):
registering it, handing it its options, the Arrow schema its reader yields, the records it
could not read routed to the dead letters (public surface for plugins).

PySpark and pyarrow are imported inside the functions: a plugin's driver-side module imports
this one without importing Spark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.datasource import DataSource
    from pyspark.sql.types import StructType


def as_options(values: Mapping[str, Any]) -> dict[str, str]:
    """Data source options are strings: a value that is not one travels as JSON (the data
    source reads it back with ``json.loads``)."""
    return {key: v if isinstance(v, str) else json.dumps(v) for key, v in values.items()}


def read(
    spark: SparkSession,
    source: type[DataSource],
    schema: StructType | str,
    options: Mapping[str, Any],
) -> DataFrame:
    """Register ``source`` in ``spark`` (registration is per session) and read it with
    ``schema`` (a ``StructType`` or DDL: the source's ``schema()`` is never asked) and
    ``options`` (see :func:`as_options`)."""
    spark.dataSource.register(source)
    return spark.read.format(source.name()).schema(schema).options(**as_options(options)).load()


def read_stream(
    spark: SparkSession,
    source: type[DataSource],
    schema: StructType | str,
    options: Mapping[str, Any],
) -> DataFrame:
    """As :func:`read`, as a stream: the source's ``streamReader`` gives the offsets and reads
    each micro-batch's ranges."""
    spark.dataSource.register(source)
    return (
        spark.readStream.format(source.name()).schema(schema).options(**as_options(options)).load()
    )


def write(df: DataFrame, source: type[DataSource], options: Mapping[str, Any]) -> None:
    """Register ``source`` in ``df``'s session and append ``df`` through its writer, one task
    per partition, with ``options`` (see :func:`as_options`)."""
    df.sparkSession.dataSource.register(source)
    df.write.format(source.name()).mode("append").options(**as_options(options)).save()


def parallelism(spark: SparkSession) -> int:
    """How many tasks the session runs at once (Spark's default parallelism), for a source
    planning its splits; the driver's cores where there is no SparkContext (Spark Connect)."""
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - no SparkContext (Spark Connect): the driver's cores
        import os

        return os.cpu_count() or 1


def arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow schema of the batches a reader yields for the read's ``schema``: timestamps
    in UTC, strings and binaries not large, and every column nullable (rows from outside come
    with no promise that a column holds no null)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC", prefers_large_types=False)
    return pa.schema([field.with_nullable(True) for field in arrow])


def dead_letter_errors(rule: str, message: str | Column) -> Column:
    """A dead-letter record's ``errors``: one error of ``rule``, with ``message`` (text, or a
    column), severity ``error``."""
    from pyspark.sql import functions as F

    text = F.lit(message) if isinstance(message, str) else message
    error = F.struct(
        F.lit(rule).alias("rule"), text.alias("message"), F.lit("error").alias("severity")
    )
    return F.array(error).alias("errors")


def row_json(*columns: str | Column) -> Column:
    """A row as a dead-letter record's ``row``: JSON of ``columns``, nulls included (the null
    of a column is often why the row is there)."""
    from pyspark.sql import functions as F

    return F.to_json(F.struct(*columns), {"ignoreNullFields": "false"})


def split_unreadable(
    ctx: Any,
    df: DataFrame,
    marker: str,
    *,
    rule: str,
    message: str | Column,
    position: str | Column,
    row: str | Column | None = None,
    drop: Sequence[str] = (),
) -> DataFrame:
    """For a source whose reader marks the records it could not read (column ``marker`` set,
    e.g. to the raw text): send those to the ``extract`` dead letters through ``ctx`` (the
    extractor's ``Context``) with ``rule``, ``message`` (text, or a column), ``position`` and
    ``row`` (column names or columns; ``row`` defaults to the marker), and return the other
    rows without the marker and ``drop``. The frame is persisted: one read serves both."""
    from pyspark.sql import functions as F

    def column(value: str | Column) -> Column:
        return F.col(value) if isinstance(value, str) else value

    df = ctx.persist(df)
    bad = df.filter(F.col(marker).isNotNull()).select(
        dead_letter_errors(rule, message),
        column(marker if row is None else row).alias("row"),
        column(position).alias("source_position"),
    )
    ctx.dead_letter("extract", bad)
    return df.filter(F.col(marker).isNull()).drop(marker, *drop)
