"""Moving rows on the executors through a Spark Python data source (``pyspark.sql.datasource``):
registering it, handing it its options, the Arrow schema its reader yields (public surface for
plugins).

PySpark and pyarrow are imported inside the functions: a plugin's driver-side module imports
this one without importing Spark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
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


def write(df: DataFrame, source: type[DataSource], options: Mapping[str, Any]) -> None:
    """Register ``source`` in ``df``'s session and append ``df`` through its writer, one task
    per partition, with ``options`` (see :func:`as_options`)."""
    df.sparkSession.dataSource.register(source)
    df.write.format(source.name()).mode("append").options(**as_options(options)).save()


def arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow schema of the batches a reader yields for the read's ``schema``: timestamps
    in UTC, strings and binaries not large, and every column nullable (rows from outside come
    with no promise that a column holds no null)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema, timezone="UTC", prefers_large_types=False)
    return pa.schema([field.with_nullable(True) for field in arrow])
