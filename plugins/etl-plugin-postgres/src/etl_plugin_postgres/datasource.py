"""The Spark Python data source ``etl_postgres``: partitioned Arrow reads and staging writes,
run on the executors through ADBC (``adbc-driver-postgresql``, binary COPY).

This module imports pyspark and is imported only when a run registers the data source; it
must stay importable on the workers (it is part of the installed package).

Options (strings): ``connection`` (JSON, no password), ``password`` (under that key so Spark
redacts it from plans), ``plan`` (JSON). Read plan: ``{"select": SQL without WHERE,
"predicates": [...]}``. Write plan: ``{"schema": ..., "table": ..., "types": {column:
arrow type code}}``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from etl_core.datasources import arrow_schema
from etl_plugin_postgres.client import ConnInfo, adbc_connect, adbc_error

NAME = "etl_postgres"


def arrow_code(data_type: pa.DataType | None) -> str:
    """A JSON-friendly code for the Arrow types the writer casts to (``text``: land as text)."""
    if data_type is None:
        return "text"
    if pa.types.is_list(data_type):
        return "list:" + arrow_code(data_type.value_type)
    if pa.types.is_decimal(data_type):
        return f"decimal:{data_type.precision}:{data_type.scale}"
    if pa.types.is_timestamp(data_type):
        return "timestamptz" if data_type.tz else "timestamp"
    return str(data_type)


def arrow_type(code: str) -> pa.DataType:
    if code == "text":
        return pa.large_string()
    if code.startswith("list:"):
        return pa.list_(arrow_type(code[5:]))
    if code.startswith("decimal:"):
        _, precision, scale = code.split(":")
        return pa.decimal128(int(precision), int(scale))
    if code == "timestamptz":
        return pa.timestamp("us", tz="UTC")
    if code == "timestamp":
        return pa.timestamp("us")
    return {
        "bool": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "large_string": pa.large_string(),
        "large_binary": pa.large_binary(),
        "date32[day]": pa.date32(),
    }[code]


def decimal_of_unscaled(column: pa.Array, target: pa.Decimal128Type) -> pa.Array:
    """An int64 array of unscaled values (the read plan's ``(x * 1eS)::int8``) as ``target``:
    each value widened to the 128-bit two's complement a decimal128 stores, no arithmetic."""
    import numpy as np

    values = column.fill_null(0).to_numpy()
    words = np.empty((len(values), 2), np.int64)
    words[:, 0] = values
    words[:, 1] = values >> 63  # the sign, extended
    validity = column.is_valid().buffers()[1] if column.null_count else None
    return pa.Array.from_buffers(
        target, len(column), [validity, pa.py_buffer(words)], column.null_count
    )


def conform(column: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """Cast one column to ``target``; PostgreSQL-specific extension types give up their
    storage first (numeric arrives as text and becomes a decimal here)."""
    if isinstance(column.type, pa.ExtensionType):
        column = (
            column.storage
            if isinstance(column, pa.Array)
            else column.cast(column.type.storage_type)
        )
    if column.type != target:
        column = column.cast(target, safe=True)
    return column


class PostgresDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return PostgresReader(self.options, schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return PostgresStagingWriter(self.options)


class PostgresReader(DataSourceReader):
    def __init__(self, options: dict[str, str], schema: StructType):
        self.info = ConnInfo.from_data_source(options)
        self.plan = json.loads(options["plan"])
        self.what = options.get("what", "postgres source")
        self.arrow_schema = arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(predicate) for predicate in self.plan["predicates"]]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        query = f"{self.plan['select']} WHERE {partition.value}"
        conn = adbc_connect(self.info, self.what)
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(query)
                batches = cursor.fetch_record_batch()
                for batch in batches:
                    if batch.num_rows:
                        yield self._conform(batch)
            except Exception as exc:  # noqa: BLE001 - driver errors become typed ones
                raise adbc_error(exc, self.info, self.what) from None
            finally:
                cursor.close()
        finally:
            conn.close()

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        for column, field in zip(batch.columns, self.arrow_schema, strict=True):
            if pa.types.is_decimal(field.type) and pa.types.is_int64(column.type):
                column = decimal_of_unscaled(column, field.type)
            columns.append(conform(column, field.type))
        return pa.RecordBatch.from_arrays(columns, schema=self.arrow_schema)


class _Staged(WriterCommitMessage):
    def __init__(self, rows: int):
        self.rows = rows


class PostgresStagingWriter(DataSourceArrowWriter):
    """Each task COPYs its batches into the run's staging table in one transaction: a task
    that fails leaves nothing there, and one that Spark retries starts over cleanly."""

    def __init__(self, options: dict[str, str]):
        self.info = ConnInfo.from_data_source(options)
        self.plan = json.loads(options["plan"])
        self.what = options.get("what", "postgres sink")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriterCommitMessage:
        types = self.plan["types"]
        first = next(iterator, None)
        if first is None:
            return _Staged(0)
        names = list(first.schema.names)
        schema = pa.schema([(n, arrow_type(types[n])) for n in names])
        counted = [0]

        def batches() -> Iterator[pa.RecordBatch]:
            for item in itertools.chain([first], iterator):
                counted[0] += item.num_rows
                yield pa.RecordBatch.from_arrays(
                    [conform(item.column(i), schema.field(i).type) for i in range(len(names))],
                    schema=schema,
                )

        conn = adbc_connect(self.info, self.what)
        try:
            cursor = conn.cursor()
            try:
                reader = pa.RecordBatchReader.from_batches(schema, batches())
                cursor.adbc_ingest(
                    self.plan["table"], reader, mode="append", db_schema_name=self.plan["schema"]
                )
                conn.commit()
            except Exception as exc:  # noqa: BLE001 - driver errors become typed ones
                conn.rollback()
                if isinstance(exc, pa.ArrowInvalid):
                    raise ValueError(
                        f"{self.what}: a value does not fit the target column: {exc}"
                    ) from None
                raise adbc_error(exc, self.info, self.what) from None
            finally:
                cursor.close()
        finally:
            conn.close()
        return _Staged(counted[0])

    def commit(self, messages: list[Any]) -> None:
        """Staging finished; publishing is the runner's step (DESIGN §4)."""

    def abort(self, messages: list[Any]) -> None:
        """Failed tasks rolled back their own rows; the runner discards the staging table."""
