"""OpenTelemetry spans of a run and its stages, read from the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etl_core import config
from etl_core.errors import EtlError
from etl_core.run.runner import run

pytestmark = pytest.mark.spark


def pipeline(tmp_path: Path, condition: str = "country = 'FR'", tracing: bool = True) -> dict:
    (tmp_path / "users.csv").write_text("user_id,name,country\n1,ann,FR\n2,bob,US\n3,cid,FR\n")
    spec = {
        "name": "traced",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING, country STRING",
            }
        },
        "transforms": {"french": {"type": "filter", "inputs": ["users"], "condition": condition}},
        "sinks": {"out": {"type": "files", "input": "french", "format": "parquet", "path": "out"}},
    }
    if tracing:
        spec["tracing"] = {"exporter": "otlp", "endpoint": "http://127.0.0.1:9/v1/traces"}
    return spec


def traced_run(tmp_path, etl_spark, etl_host, **kwargs):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    bound = config.check(data=pipeline(tmp_path, **kwargs), base_dir=tmp_path, host=etl_host)
    try:
        metrics = run(bound, etl_host, spark=etl_spark, span_exporter=exporter)
    except EtlError as exc:
        metrics = exc.metrics
    spans = {span.name: span for span in exporter.get_finished_spans()}
    return metrics, spans


def test_a_run_has_one_span_and_one_child_per_dataset_stage(tmp_path, etl_spark, etl_host):
    metrics, spans = traced_run(tmp_path, etl_spark, etl_host)
    assert set(spans) == {"etl run traced", "extract users", "transform french", "load out"}
    root = spans["etl run traced"]
    assert root.parent is None
    assert root.attributes["etl.pipeline"] == "traced"
    assert root.attributes["etl.run_id"] == metrics.run_id
    assert root.attributes["etl.outcome"] == "succeeded"
    expected = {
        "extract users": ("users", "files", 3, "succeeded"),
        "transform french": ("french", "filter", 2, "succeeded"),
        "load out": ("out", "files", 2, "published"),
    }
    for name, (dataset, component, rows, outcome) in expected.items():
        span = spans[name]
        assert span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes["etl.pipeline"] == "traced"
        assert span.attributes["etl.dataset"] == dataset
        assert span.attributes["etl.component"] == component
        assert span.attributes["etl.rows"] == rows
        assert span.attributes["etl.outcome"] == outcome
    load = spans["load out"]
    duration_s = (load.end_time - load.start_time) / 1e9
    assert duration_s == pytest.approx(metrics.stage("out", "load").duration_s, abs=0.01)


def test_a_failed_run_marks_its_spans_as_errors(tmp_path, etl_spark, etl_host):
    from opentelemetry.trace import StatusCode

    metrics, spans = traced_run(tmp_path, etl_spark, etl_host, condition="raise_error('x') IS NULL")
    assert metrics.status == "failed"
    root = spans["etl run traced"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["etl.outcome"] == "failed"
    assert spans["load out"].attributes["etl.outcome"] == "failed"


def test_tracing_off_imports_no_opentelemetry():
    code = (
        "import sys, etl_core, etl_core.cli, etl_core.run.runner, etl_core.health; "
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
