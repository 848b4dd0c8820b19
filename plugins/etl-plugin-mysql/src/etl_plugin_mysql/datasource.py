"""Spark Python data source ``etl_mysql``: the I/O that runs on the executors.

Reading: one input partition per SQL query, streamed by connectorx as Arrow batches and cast to
the declared Spark schema. Writing: each task writes its Arrow batches as CSV to a temporary file
and ``LOAD DATA LOCAL INFILE``s it into the run's staging table in one transaction, together
with a row in the staging's task table keyed by the partition id, so a task that Spark runs
again after it committed loads nothing twice.

Options (strings): ``host``, ``port``, ``database``, ``user``, ``password`` (redacted by Spark),
``connect_options`` (JSON), ``what`` (the source or sink, for messages); reading:
``queries`` (JSON list; the schema is the read's); writing: ``table``, ``tasks_table``,
``bit_columns`` (JSON list).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from etl_core.datasources import arrow_schema
from etl_core.errors import LoadError
from etl_plugin_mysql.client import Endpoint, quote_name, session

NAME = "etl_mysql"
#: rows per Arrow batch of a read (connectorx ``arrow_stream``)
BATCH_ROWS = 65536


class MySQLDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return MySQLReader(dict(self.options), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return MySQLWriter(dict(self.options), schema)


class MySQLReader(DataSourceReader):
    def __init__(self, options: dict[str, str], schema: StructType):
        self.options = options
        self.schema = schema

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(query) for query in json.loads(self.options["queries"])]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        import connectorx
        import pyarrow as pa
        import pyarrow.compute as pc

        endpoint = Endpoint.from_options(self.options)
        target = arrow_schema(self.schema)
        try:  # batches as they arrive: Spark consumes one while the next is fetched
            batches = connectorx.read_sql(
                endpoint.uri(), partition.value, return_type="arrow_stream", batch_size=BATCH_ROWS
            )
            for batch in batches:
                if batch.num_rows:
                    arrays = [pc.cast(batch.column(i), f.type) for i, f in enumerate(target)]
                    yield pa.RecordBatch.from_arrays(arrays, schema=target)
        except Exception as exc:  # noqa: BLE001 - connectorx raises bare RuntimeErrors
            message = endpoint.redact(str(exc))
            raise RuntimeError(
                f"{self.options.get('what', 'mysql source')} (mysql {endpoint.where}): {message}"
            ) from None


@attrs.frozen
class TaskLoaded(WriterCommitMessage):
    partition: int
    rows: int


class MySQLWriter(DataSourceArrowWriter):
    def __init__(self, options: dict[str, str], schema: StructType):
        self.options = options
        self.schema = schema

    def write(self, iterator: Iterator[Any]) -> WriterCommitMessage:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        endpoint = Endpoint.from_options(self.options)
        what = self.options.get("what", "mysql sink")
        handle, path = tempfile.mkstemp(prefix="etl-mysql-", suffix=".csv")
        try:
            with os.fdopen(handle, "wb") as sink:
                bits = frozenset(json.loads(self.options.get("bit_columns", "[]")))
                rows, columns = write_csv(iterator, sink, self.schema, bits)
            with session(endpoint, what, local_infile=True) as conn:
                loaded = self._load(conn, partition, path, rows, columns, what)
                conn.commit()
        finally:
            os.unlink(path)
        return TaskLoaded(partition, loaded)

    def _load(
        self, conn: Any, partition: int, path: str, rows: int, columns: str, what: str
    ) -> int:
        import pymysql

        table = quote_name(self.options["table"])
        tasks = quote_name(self.options["tasks_table"])
        with conn.cursor() as cursor:
            try:
                cursor.execute(f"INSERT INTO {tasks} (task) VALUES (%s)", (partition,))  # noqa: S608
            except pymysql.err.IntegrityError:
                return 0  # an earlier attempt of this task committed its rows already
            if not rows:
                return 0
            cursor.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' {columns}",
                (path,),
            )
            loaded = cursor.rowcount
            cursor.execute("SHOW WARNINGS LIMIT 5")
            problems = [
                f"{msg} [{code}]" for level, code, msg in cursor.fetchall() if level != "Note"
            ]
        if problems or loaded != rows:
            conn.rollback()
            target = self.options.get("target", self.options["table"])
            detail = "; ".join(p.replace(self.options["table"], target) for p in problems)
            refused = (
                f"the server refused {rows - loaded} of {rows} rows"
                if loaded != rows
                else f"the server refused to store the {rows} rows as given (it would change "
                "their values)"
            )
            raise LoadError(
                f"{what} ({target}): {refused}: {detail or 'no reason given'}; fix the rows (a "
                "transform, or a quality rule with quarantine) or the table's columns (a "
                "duplicate key within one upsert batch is refused: deduplicate the input first)"
            )
        return loaded


def write_csv(
    batches: Iterator[Any], sink: Any, schema: StructType, bit_columns: frozenset[str]
) -> tuple[int, str]:
    """Write Arrow batches as the CSV that ``LOAD DATA`` reads back exactly: every value
    quoted, NULL as the bare word ``NULL``, booleans as 0/1, timestamps in UTC, binary as hex,
    BIT columns through ``CAST(... AS UNSIGNED)``.
    Returns the row count and the column list (with ``SET`` clauses) of the statement."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as csv

    options = csv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL")
    targets, sets = [], []
    for i, field in enumerate(schema.fields):
        name = quote_name(field.name)
        if field.dataType.simpleString() == "binary":
            targets.append(f"@v{i}")
            sets.append(f"{name} = UNHEX(@v{i})")
        elif field.name in bit_columns:  # '1' would be the byte 0x31
            targets.append(f"@v{i}")
            sets.append(f"{name} = CAST(@v{i} AS UNSIGNED)")
        else:
            targets.append(name)
    columns = f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else "")
    writer = None
    rows = 0
    for batch in batches:
        arrays = []
        for array in batch.columns:
            kind = array.type
            if pa.types.is_boolean(kind):
                array = pc.cast(array, pa.int8())
            elif pa.types.is_timestamp(kind) and kind.tz is not None:
                array = pc.cast(array, pa.timestamp("us"))
            elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
                array = pa.array(
                    [None if v is None else v.hex() for v in array.to_pylist()], pa.string()
                )
            arrays.append(array)
        table = pa.Table.from_arrays(arrays, names=[f.name for f in schema.fields])
        if writer is None:
            writer = csv.CSVWriter(sink, table.schema, write_options=options)
        writer.write_table(table)
        rows += table.num_rows
    if writer is not None:
        writer.close()
    return rows, columns
