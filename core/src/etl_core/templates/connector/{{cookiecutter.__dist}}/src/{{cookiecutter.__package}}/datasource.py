{%- set kinds = cookiecutter.kinds.split(',') | map('trim') | list -%}
"""The Spark Python data source ``etl_{{ cookiecutter.name|replace('-', '_') }}``: the rows move on the
executors, never through the driver.

This module imports pyspark; the components import it only when a run reads or writes, and
Spark's Python workers import it from the installed package. Options are strings
(``etl_core.datasources.as_options``):
{%- if 'extractor' in kinds %} a read takes ``files`` (JSON: the data files, one partition
each){% endif %}{% if 'extractor' in kinds and 'loader' in kinds %};{% endif %}
{%- if 'loader' in kinds %} a write takes ``staging`` (the folder its tasks write into){% endif %};
both take ``what`` (the block, for errors).
"""

from __future__ import annotations

import json
{%- if 'loader' in kinds %}
import uuid
{%- endif %}
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from etl_core import PermanentError
{%- if 'extractor' in kinds %}
from etl_core.datasources import arrow_schema
{%- endif %}
from pyspark.sql.datasource import (
    DataSource,
{%- if 'loader' in kinds %}
    DataSourceArrowWriter,
{%- endif %}
{%- if 'extractor' in kinds %}
    DataSourceReader,
    InputPartition,
{%- endif %}
{%- if 'loader' in kinds %}
    WriterCommitMessage,
{%- endif %}
)
from pyspark.sql.types import StructType

from {{ cookiecutter.__package }} import client

NAME = "etl_{{ cookiecutter.name|replace('-', '_') }}"
{%- if 'loader' in kinds %}
#: the staging folder's list of the files that successful tasks wrote, read by the publish
COMMITTED = "_committed.json"
{%- endif %}


class {{ cookiecutter.__class }}DataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return NAME
{%- if 'extractor' in kinds %}

    def reader(self, schema: StructType) -> DataSourceReader:
        return {{ cookiecutter.__class }}Reader(self.options, schema)
{%- endif %}
{%- if 'loader' in kinds %}

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return {{ cookiecutter.__class }}StagingWriter(self.options)
{%- endif %}
{%- if 'extractor' in kinds %}


class {{ cookiecutter.__class }}Reader(DataSourceReader):
    """One partition per data file; each yields Arrow record batches."""

    def __init__(self, options: dict[str, str], schema: StructType):
        self.files = json.loads(options["files"])
        self.what = options.get("what", "{{ cookiecutter.name }} source")
        self.schema = arrow_schema(schema)

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(path) for path in self.files]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        path = Path(partition.value)
        try:
            table = client.read_rows(path, self.schema)
        except (OSError, pa.ArrowException) as exc:
            raise PermanentError(f"{self.what}: cannot read {path}: {exc}") from None
        yield from table.to_batches(max_chunksize=65_536)
{%- endif %}
{%- if 'loader' in kinds %}


class _Written(WriterCommitMessage):
    def __init__(self, names: list[str]):
        self.names = names


class {{ cookiecutter.__class }}StagingWriter(DataSourceArrowWriter):
    """Each task writes one file into the staging folder; ``commit`` lists the files of the
    successful tasks, and the publish moves exactly those (never a failed attempt's)."""

    def __init__(self, options: dict[str, str]):
        self.staging = Path(options["staging"])
        self.what = options.get("what", "{{ cookiecutter.name }} sink")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriterCommitMessage:
        name = f"part-{uuid.uuid4().hex[:12]}.jsonl"
        rows = (row for batch in iterator for row in batch.to_pylist())
        try:
            client.write_rows(self.staging / name, rows)
        except OSError as exc:
            (self.staging / name).unlink(missing_ok=True)
            raise PermanentError(f"{self.what}: cannot write its staging: {exc}") from None
        return _Written([name])

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        names = [n for m in messages if isinstance(m, _Written) for n in m.names]
        (self.staging / COMMITTED).write_text(json.dumps(names))

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        for message in messages:
            for name in getattr(message, "names", []):
                (self.staging / name).unlink(missing_ok=True)
{%- endif %}
