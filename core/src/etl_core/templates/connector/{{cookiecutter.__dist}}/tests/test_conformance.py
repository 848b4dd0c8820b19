{%- set kinds = cookiecutter.kinds.split(',') | map('trim') | list -%}
{%- set cls = cookiecutter.__class -%}
{%- set ext, load = 'extractor' in kinds, 'loader' in kinds -%}
{%- set cred, rep = 'credential_provider' in kinds, 'metrics_reporter' in kinds -%}
"""The ``{{ cookiecutter.name }}`` components through etl_core's conformance suites: the cases every
connector must pass, selected by what each component declares. Change the hooks below when you
point the connector at your real system (a fresh target per test, how to create and read it)."""

from __future__ import annotations

{% if ext or load -%}
import datetime as dt
import decimal
{% endif -%}
{% if cred or rep -%}
import json
{% endif -%}
{% if ext or load -%}
import uuid
from pathlib import Path

import pyarrow as pa
{% else %}
{% endif -%}
{% if ext or load or cred -%}
import pytest
{% endif -%}
{% if ext or load -%}
from etl_core.datasources import arrow_schema
{% endif -%}
from etl_core.testing import (
{%- if cred %}
    CredentialProviderConformance,
{%- endif %}
{%- if ext %}
    ExtractorConformance,
{%- endif %}
{%- if load %}
    LoaderConformance,
{%- endif %}
{%- if rep %}
    MetricsReporterConformance,
{%- endif %}
{%- if ext or load %}
    TypeCase,
{%- endif %}
)
{%- if ext or load %}

from {{ cookiecutter.__package }} import client
{%- endif %}

NAME = "{{ cookiecutter.name }}"
{%- if ext or load %}

#: the type mapping (README.md): the native type is the column's Spark DDL type in _table.json
TYPE_CASES = [
    TypeCase("c_int", "INT", (1, -(2**31), None), "int32"),
    TypeCase("c_bool", "BOOLEAN", (True, False, None), "bool_"),
    TypeCase("c_text", "STRING", ("héllo", "", None), "string"),
    TypeCase("c_date", "DATE", (dt.date(2024, 2, 29), dt.date(1, 1, 1), None), "date32"),
    TypeCase(
        "c_ts",
        "TIMESTAMP",
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None),
        pa.timestamp("us", tz="UTC"),
    ),
    TypeCase("c_decimal", "DECIMAL(12,3)", (decimal.Decimal("12.345"), None), pa.decimal128(12, 3)),
]


class {{ cls }}Hooks:
    """How the suites reach the backing system: here a table folder under pytest's tmp_path."""

    component = NAME
    type_cases = TYPE_CASES
    basic_types = {"id": "BIGINT", "name": "STRING", "amount": "DOUBLE"}

    @pytest.fixture(autouse=True)
    def _spark(self, etl_spark):
        self.spark = etl_spark  # parses a table's DDL schema in read_target

    @pytest.fixture
    def target(self, tmp_path):
        return str(tmp_path / f"t_{uuid.uuid4().hex[:8]}")

    def create_target(self, target, columns, rows=(), key=()):
        client.create(Path(target), ", ".join(f"`{n}` {t}" for n, t in columns), rows)

    def add_rows(self, target, rows):
        client.add(Path(target), rows)

    def read_target(self, target):
        folder = Path(target)
        table = client.read_table(folder)
        schema = arrow_schema(self.spark.createDataFrame([], table.schema).schema)
        rows = [client.read_rows(folder / f, schema).to_pylist() for f in table.files]
        return [row for part in rows for row in part]

    def staging_leftovers(self, target):
        staging = Path(target) / client.STAGING
        return sorted(str(p) for p in staging.rglob("*") if p.is_file())

    def block(self, target, **options):
        return {"type": NAME, "path": target, **options}
{%- endif %}
{%- if load %}


class Test{{ cls }}LoaderConformance({{ cls }}Hooks, LoaderConformance):
    def sink_block(self, target, **options):
        return self.block(target, **options)

    def failing_sink_block(self, target):
        return self.block(f"{target}-missing", mode="append")  # no table there
{%- endif %}
{%- if ext %}


class Test{{ cls }}ExtractorConformance({{ cls }}Hooks, ExtractorConformance):
    def source_block(self, target, **options):
        return self.block(target, **options)

    def partition_options(self, column, partitions):
        return {}  # one Spark partition per data file

    def failing_source_block(self, target):
        return self.block(f"{target}-missing")
{%- endif %}
{%- if ext and load %}


def test_a_pipeline_copies_a_table(etl_run, tmp_path):
    """What a user does first: read one table, write another, through `etl run`'s code path."""
    rows = [{"id": i, "name": f"n{i}"} for i in range(10)]
    client.create(tmp_path / "src", "id BIGINT, name STRING", rows)
    client.create(tmp_path / "dst", "id BIGINT, name STRING")
    pipeline = {
        "name": "copy",
        "sources": {"src": {"type": NAME, "path": "src"}},
        "transforms": {"odd": {"type": "filter", "inputs": ["src"], "condition": "id % 2 = 1"}},
        "sinks": {"dst": {"type": NAME, "input": "odd", "path": "dst"}},
    }
    metrics = etl_run(pipeline, plugins=True)
    assert metrics.published == ["dst"]
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    table = client.read_table(tmp_path / "dst")
    got = [client.read_rows(tmp_path / "dst" / f, schema).to_pylist() for f in table.files]
    assert sorted(row["id"] for rows in got for row in rows) == [1, 3, 5, 7, 9]
{%- endif %}
{%- if cred %}


class Test{{ cls }}CredentialProviderConformance(CredentialProviderConformance):
    provider = NAME

    @pytest.fixture
    def secrets_file(self, tmp_path, monkeypatch):
        file = tmp_path / "secrets.json"
        variable = "ETL_{{ cookiecutter.name|upper|replace('-', '_') }}_SECRETS"
        monkeypatch.setenv(variable, str(file))  # where inline references look

        return file

    @pytest.fixture
    def entry(self, secrets_file):
        secrets_file.write_text(json.dumps({"etl/conformance": self.values()}))
        return {"path": "etl/conformance", "file": str(secrets_file)}

    @pytest.fixture
    def reference(self, entry):
        return "etl/conformance#password"

    @pytest.fixture
    def missing_entry(self, secrets_file):
        secrets_file.write_text("{}")
        return {"path": "etl/missing", "file": str(secrets_file)}, "etl/missing"
{%- endif %}
{%- if rep %}


class Test{{ cls }}ReporterConformance(MetricsReporterConformance):
    component = NAME

    def reporter_block(self, tmp_path):
        return {"type": NAME, "path": str(tmp_path / "metrics.jsonl")}

    def reported(self, tmp_path, metrics):
        lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
        return {
            (line["dataset"], line["stage"]): line["rows_out"]
            for line in map(json.loads, lines)
            if line["run_id"] == metrics.run_id
        }

    def failing_block(self, tmp_path):
        blocker = tmp_path / "a-file"
        blocker.write_text("where the reporter needs a folder")
        return {"type": NAME, "path": str(blocker / "metrics.jsonl")}
{%- endif %}
