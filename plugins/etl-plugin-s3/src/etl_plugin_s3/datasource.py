"""The Spark Python data source ``etl_s3``: partitioned Arrow reads and staging writes of S3
objects, run on the executors through ``pyarrow.fs.S3FileSystem``.

This module imports pyspark and is imported only when a run registers the data source; it
stays importable on the workers (it is part of the installed package).

Options (strings): ``connection`` (JSON: region, endpoint, no keys), ``secret`` (JSON: the
keys, under that key so that Spark redacts it from plans), ``plan`` (JSON), ``what`` (the
block, for errors). Read plan: ``{"format", "compression", "header", "delimiter", "capture",
"parts": [{"path", "row_groups", "values"}]}``. Write plan: ``{"staging", "format",
"compression", "header", "delimiter", "partition_by", "target_bytes"}``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from etl_core import PermanentError
from etl_core.datasources import arrow_schema
from etl_plugin_s3.client import Connection, s3_url, translate

NAME = "etl_s3"
#: columns of a corrupt object's marker row (``on_corrupt: dead_letter``)
CORRUPT = "_etl_corrupt_record"
POSITION = "_etl_source_position"
#: the writer's list of the files its successful tasks wrote, read by the publish
COMMITTED = "_committed.json"
#: rows buffered into one parquet row group
ROW_GROUP_ROWS = 131_072
#: most rows in one Arrow batch a read yields
BATCH_ROWS = 131_072
#: compressed bytes of row groups a parquet read fetches at once (Arrow's coalescing limit)
FETCH_BYTES = 32 << 20
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _is_service_error(exc: BaseException) -> bool:
    """An error talking to S3 (auth, network, missing bucket), not a bad object."""
    text = str(exc)
    return isinstance(exc, OSError) and ("AWS Error" in text or "curlCode" in text)


def extension(fmt: str, compression: str | None) -> str:
    ext = {"parquet": ".parquet", "csv": ".csv", "json": ".json", "jsonl": ".jsonl"}[fmt]
    return ext + (".gz" if fmt != "parquet" and compression == "gzip" else "")


class S3DataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME

    def reader(self, schema: StructType) -> DataSourceReader:
        return S3Reader(self.options, schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return S3StagingWriter(self.options)


class S3Reader(DataSourceReader):
    """One partition per object, or per run of consecutive parquet row groups of one object.
    Parquet batches are yielded as they are decoded (``FETCH_BYTES`` of row groups fetched at
    a time); with ``capture`` (and for csv/json) a partition is read whole before its batches
    are yielded, so an object that turns out corrupt yields nothing but one marker row naming
    it."""

    def __init__(self, options: dict[str, str], schema: StructType):
        self.connection = Connection.from_data_source(options)
        self.plan = json.loads(options["plan"])
        self.what = options.get("what", "s3 source")
        self.arrow_schema = arrow_schema(schema)

    @staticmethod
    def infer(head: bytes, fmt: str, header: bool, delimiter: str) -> pa.Schema:
        """The schema of csv or JSON lines text (the first lines of an object)."""
        source = pa.BufferReader(head)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            read = pacsv.ReadOptions(autogenerate_column_names=not header)
            table = pacsv.read_csv(
                source, read_options=read, parse_options=pacsv.ParseOptions(delimiter=delimiter)
            )
            if not header:  # Spark's names for headerless csv
                table = table.rename_columns([f"_c{i}" for i in range(table.num_columns)])
            return table.schema
        import pyarrow.json as pajson

        return pajson.read_json(source).schema

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(spec) for spec in self.plan["parts"]]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        spec = partition.value
        fs = self.connection.filesystem()
        try:
            if self.plan["format"] == "parquet" and not self.plan["capture"]:
                # streamed: batches go on as they are decoded; a failure fails the task
                # (and the run), so no part of an object is ever kept
                for batch in self._parquet_batches(fs, spec):
                    yield from self._batches(self._conform(batch, spec["values"]))
                return
            if self.plan["format"] == "parquet":  # whole: a corrupt object yields no rows
                table = self._parquet_table(fs, spec)
            else:
                table = self._read_text(fs, spec)
            out = self._conform(table, spec["values"])
        except Exception as exc:  # noqa: BLE001 - every failure is named below
            if _is_service_error(exc):
                raise translate(exc, f"{self.what}, reading {s3_url(spec['path'])}") from None
            fmt = self.plan["format"]
            problem = f"{s3_url(spec['path'])} is not a readable {fmt} object: {exc}"
            if not self.plan["capture"]:
                raise PermanentError(
                    f"{self.what}: {problem}; fix or remove the object, or set "
                    "`on_corrupt: dead_letter` on the source"
                ) from None
            yield self._marker(spec["path"], problem)
            return
        yield from self._batches(out)

    @staticmethod
    def _batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
        return iter(table.to_batches(max_chunksize=BATCH_ROWS))

    def _data_schema(self) -> pa.Schema:
        skip = {CORRUPT, POSITION}
        return pa.schema([f for f in self.arrow_schema if f.name not in skip])

    def _parquet_file(self, source: Any, spec: dict[str, Any]) -> tuple[Any, list[str]]:
        """The object's reader, with ``pre_buffer``: the column chunks of the row groups read
        together are fetched in coalesced requests of up to 32 MiB, not one per column."""
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source, pre_buffer=True)
        names = set(parquet.schema_arrow.names)
        wanted = [f.name for f in self._data_schema() if f.name not in spec["values"]]
        return parquet, [c for c in wanted if c in names]

    def _parquet_table(self, fs: Any, spec: dict[str, Any]) -> pa.Table:
        with fs.open_input_file(spec["path"]) as source:
            parquet, columns = self._parquet_file(source, spec)
            if spec["row_groups"] is None:
                return parquet.read(columns=columns)
            return parquet.read_row_groups(spec["row_groups"], columns=columns)

    def _parquet_batches(self, fs: Any, spec: dict[str, Any]) -> Iterator[pa.Table]:
        """The partition's row groups (all of the object's when ``row_groups`` is null) as
        tables of up to ``BATCH_ROWS`` rows, fetched ``FETCH_BYTES`` of row groups at a time
        (one request for most, instead of one per row group: fewer round trips) and decoded
        as they go on."""
        with fs.open_input_file(spec["path"]) as source:
            parquet, columns = self._parquet_file(source, spec)
            meta = parquet.metadata
            groups = spec["row_groups"]
            if groups is None:
                groups = list(range(meta.num_row_groups))
            if not groups:  # an object without row groups: its (empty) schema
                yield parquet.read(columns=columns)
                return
            for chunk in _fetches(meta, groups):
                for batch in parquet.iter_batches(
                    batch_size=BATCH_ROWS, row_groups=chunk, columns=columns
                ):
                    yield pa.Table.from_batches([batch])

    def _read_text(self, fs: Any, spec: dict[str, Any]) -> pa.Table:
        path = spec["path"]
        wanted = [f.name for f in self._data_schema() if f.name not in spec["values"]]
        compression = self.plan["compression"]
        if compression == "infer":
            compression = "gzip" if path.endswith(".gz") else "none"
        with fs.open_input_stream(
            path, compression=None if compression == "none" else compression
        ) as stream:
            return self._parse_text(stream, wanted)

    def _parse_text(self, stream: Any, wanted: list[str]) -> pa.Table:
        schema = self._data_schema()
        types = {f.name: f.type for f in schema if f.name in wanted}
        if self.plan["format"] == "csv":
            import pyarrow.csv as pacsv

            read = pacsv.ReadOptions(
                column_names=None if self.plan["header"] else [f.name for f in schema],
                block_size=8 << 20,
            )
            parse = pacsv.ParseOptions(delimiter=self.plan["delimiter"])
            convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
            return pacsv.read_csv(stream, read_options=read, parse_options=parse,
                                  convert_options=convert)  # fmt: skip
        import pyarrow.json as pajson

        explicit = pa.schema([(name, _json_parse_type(kind)) for name, kind in types.items()])
        parse = pajson.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="ignore")
        return pajson.read_json(stream, parse_options=parse)

    def _conform(self, table: pa.Table, values: dict[str, str | None]) -> pa.Table:
        rows = table.num_rows
        columns = []
        for field in self.arrow_schema:
            if field.name in table.column_names:
                columns.append(_cast(table.column(field.name), field.type))
            elif field.name in values:
                value = values[field.name]
                scalar = pa.scalar(value, pa.string()).cast(field.type)
                columns.append(pa.repeat(scalar, rows))
            else:
                columns.append(pa.nulls(rows, field.type))
        return pa.Table.from_arrays(columns, schema=self.arrow_schema)

    def _marker(self, path: str, problem: str) -> pa.RecordBatch:
        columns = []
        for field in self.arrow_schema:
            if field.name == CORRUPT:
                columns.append(pa.array([problem], field.type))
            elif field.name == POSITION:
                columns.append(pa.array([s3_url(path)], field.type))
            else:
                columns.append(pa.nulls(1, field.type))
        return pa.RecordBatch.from_arrays(columns, schema=self.arrow_schema)


def _fetches(meta: Any, groups: list[int]) -> Iterator[list[int]]:
    """``groups`` in runs of at most ``FETCH_BYTES`` compressed (a larger row group alone)."""
    run: list[int] = []
    size = 0
    for group in groups:
        row_group = meta.row_group(group)
        bytes_ = sum(row_group.column(c).total_compressed_size for c in range(meta.num_columns))
        if run and size + bytes_ > FETCH_BYTES:
            yield run
            run, size = [], 0
        run.append(group)
        size += bytes_
    if run:
        yield run


def _json_parse_type(kind: pa.DataType) -> pa.DataType:
    """JSON holds dates and decimals as strings or numbers: parse those as strings, cast later."""
    if pa.types.is_date(kind) or pa.types.is_decimal(kind) or pa.types.is_binary(kind):
        return pa.string()
    return kind


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type == target:
        return column
    both_timestamps = pa.types.is_timestamp(column.type) and pa.types.is_timestamp(target)
    return column.cast(target, safe=not both_timestamps)  # ns → us truncates, as Spark does


class _Written(WriterCommitMessage):
    def __init__(self, files: list[str]):
        self.files = files


class _ObjectWriter:
    """One object being written: parquet (row groups of ``ROW_GROUP_ROWS``), csv or JSON
    lines, optionally gzip-compressed. pyarrow.fs uploads it in parts (multipart) once it
    outgrows a single part."""

    def __init__(self, fs: Any, path: str, schema: pa.Schema, plan: dict[str, Any]):
        self.path, self.plan, self.schema = path, plan, schema
        self.raw = fs.open_output_stream(path, compression=None)
        self.stream = self.raw
        compression = plan["compression"]
        fmt = plan["format"]
        if fmt != "parquet" and compression == "gzip":
            self.stream = pa.CompressedOutputStream(self.raw, "gzip")
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.writer: Any = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            codec = compression or "snappy"
            self.writer = pq.ParquetWriter(self.stream, schema, compression=codec)
        elif fmt == "csv":
            import pyarrow.csv as pacsv

            options = pacsv.WriteOptions(include_header=plan["header"], delimiter=plan["delimiter"])
            self.writer = pacsv.CSVWriter(self.stream, schema, write_options=options)

    def write(self, table: pa.Table) -> None:
        fmt = self.plan["format"]
        if fmt == "parquet":
            self.pending.extend(table.to_batches())
            self.pending_rows += table.num_rows
            if self.pending_rows >= ROW_GROUP_ROWS:
                self._flush()
        elif fmt == "csv":
            self.writer.write_table(table)
        else:
            lines = "".join(
                json.dumps(row, default=_json_value, ensure_ascii=False) + "\n"
                for row in table.to_pylist()
            )
            self.stream.write(lines.encode())

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending, schema=self.schema))
            self.pending, self.pending_rows = [], 0

    def size(self) -> int:
        return int(self.raw.tell()) + self.pending_rows * 64  # a rough guess for the buffer

    def close(self) -> None:
        if self.plan["format"] == "parquet":
            self._flush()
        if self.writer is not None:
            self.writer.close()
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def _folder_value(value: Any) -> str:
    if value is None:
        return HIVE_NULL
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return quote(text, safe=" -_.:")


class S3StagingWriter(DataSourceArrowWriter):
    """Each task writes its own objects under the run's staging prefix and returns their
    names; a task that fails deletes what it wrote. ``commit`` records the names of the
    successful tasks' objects (``_committed.json``): the publish moves exactly those, so an
    object of a failed or duplicate task attempt is never published."""

    def __init__(self, options: dict[str, str]):
        self.connection = Connection.from_data_source(options)
        self.plan = json.loads(options["plan"])
        self.what = options.get("what", "s3 sink")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriterCommitMessage:
        fs = self.connection.filesystem()
        task = uuid.uuid4().hex[:12]
        staging, plan = self.plan["staging"], self.plan
        ext = extension(plan["format"], plan["compression"])
        open_writers: dict[str, _ObjectWriter] = {}
        written: list[str] = []
        counter = 0
        try:
            for batch in iterator:
                for folder, piece in self._split(pa.Table.from_batches([batch])):
                    writer = open_writers.get(folder)
                    if writer is None:
                        name = f"{folder}/" if folder else ""
                        name += f"part-{task}-{counter:05d}{ext}"
                        counter += 1
                        writer = _ObjectWriter(fs, f"{staging}/{name}", piece.schema, plan)
                        open_writers[folder] = writer
                        written.append(name)
                    writer.write(piece)
                    if writer.size() >= plan["target_bytes"]:
                        open_writers.pop(folder).close()
            while open_writers:
                open_writers.popitem()[1].close()
        except BaseException as exc:
            self._clean_up(fs, open_writers, written)
            if _is_service_error(exc):
                raise translate(exc, self.what) from None
            raise
        return _Written(written)

    def _split(self, table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
        """The rows of each ``partition_by`` value combination, without those columns."""
        partition_by = self.plan["partition_by"]
        if not partition_by:
            yield "", table
            return
        combos = table.select(partition_by).group_by(partition_by, use_threads=False)
        for combo in combos.aggregate([]).to_pylist():
            mask = None
            for column, value in combo.items():
                test = (
                    pc.is_null(table[column])
                    if value is None
                    else pc.fill_null(pc.equal(table[column], value), False)
                )
                mask = test if mask is None else pc.and_(mask, test)
            folder = "/".join(f"{c}={_folder_value(v)}" for c, v in combo.items())
            yield folder, table.filter(mask).drop_columns(partition_by)

    def _clean_up(self, fs: Any, open_writers: dict[str, _ObjectWriter], written: list[str]):
        for writer in open_writers.values():
            with contextlib.suppress(Exception):  # the object is deleted next anyway
                writer.close()
        for name in written:
            with contextlib.suppress(Exception):  # the runner discards the staging too
                fs.delete_file(f"{self.plan['staging']}/{name}")

    def commit(self, messages: list[Any]) -> None:
        files = sorted(f for m in messages if m is not None for f in m.files)
        fs = self.connection.filesystem()
        with fs.open_output_stream(f"{self.plan['staging']}/{COMMITTED}") as stream:
            stream.write(json.dumps(files).encode())

    def abort(self, messages: list[Any]) -> None:
        """The failed tasks deleted their own objects; delete the successful tasks' too."""
        fs = self.connection.filesystem()
        for message in messages:
            for name in getattr(message, "files", ()):
                with contextlib.suppress(Exception):  # the runner discards the staging too
                    fs.delete_file(f"{self.plan['staging']}/{name}")
