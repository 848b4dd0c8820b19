"""The prometheus reporter against a real Pushgateway, after real runs on the shared session."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest
from etl_plugin_prometheus import plugin
from etl_plugin_prometheus.testing import unique_job

from etl_core import METRIC_NAMES, EtlError
from etl_core.plugins import get_plugin_host

pytestmark = pytest.mark.spark
README = Path(__file__).resolve().parents[1] / "README.md"


def pipeline(tmp_path: Path, metrics: list[dict], condition: str = "country = 'FR'") -> dict:
    (tmp_path / "users.csv").write_text("user_id,name,country\n1,ann,FR\n2,bob,US\n3,cid,FR\n")
    return {
        "name": "metrics_demo",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING, country STRING",
            }
        },
        "transforms": {"french": {"type": "filter", "inputs": ["users"], "condition": condition}},
        "sinks": {
            "out": {
                "type": "files",
                "input": "french",
                "format": "parquet",
                "path": "out",
                "mode": "overwrite",
            }
        },
        "metrics": metrics,
    }


@pytest.fixture
def host():
    return get_plugin_host(autoload=False, extra=[("prometheus", plugin)])


def test_a_run_pushes_its_series_with_exact_values(etl_run, tmp_path, pushgateway, host):
    job = unique_job()
    block = {"type": "prometheus", "pushgateway": pushgateway.url, "job": job}
    metrics = etl_run(pipeline(tmp_path, [block]), host=host)

    found = pushgateway.samples(job)
    group = {"pipeline": "metrics_demo"}

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset({**group, **labels}.items()))]

    assert value("etl_rows_total", dataset="users", stage="extract") == 3
    assert value("etl_rows_total", dataset="french", stage="transform") == 2
    assert value("etl_rows_total", dataset="out", stage="load") == 2
    assert value("etl_rows_rejected_total", dataset="out", stage="load") == 0
    assert value("etl_dead_letters_total") == 0
    assert value("etl_retries_total") == 0
    assert value("etl_published_datasets") == 1
    assert value("etl_run_success") == 1
    assert value("etl_run_duration_seconds") == pytest.approx(metrics.duration_s)
    assert value("etl_stage_duration_seconds", dataset="out", stage="load") == pytest.approx(
        metrics.stage("out", "load").duration_s
    )
    ended = metrics.finished_at.timestamp()
    assert value("etl_run_last_timestamp_seconds") == pytest.approx(ended)
    assert value("etl_run_last_success_timestamp_seconds") == pytest.approx(ended)
    gateways_own = {"push_time_seconds", "push_failure_time_seconds"}
    assert {name for name, _ in found} - gateways_own <= METRIC_NAMES


def test_a_failed_run_keeps_the_last_success_time(etl_run, tmp_path, pushgateway, host):
    job = unique_job()
    block = {"type": "prometheus", "pushgateway": pushgateway.url, "job": job}
    ok = etl_run(pipeline(tmp_path, [block]), host=host)
    with pytest.raises(EtlError):
        etl_run(pipeline(tmp_path, [block], "raise_error('boom') IS NULL"), host=host)

    found = pushgateway.samples(job)
    group = frozenset({"pipeline": "metrics_demo"}.items())
    assert found[("etl_run_success", group)] == 0
    assert found[("etl_run_last_success_timestamp_seconds", group)] == pytest.approx(
        ok.finished_at.timestamp()
    )
    assert found[("etl_run_last_timestamp_seconds", group)] > ok.finished_at.timestamp()


def test_group_by_run_adds_the_run_id_to_the_grouping_key(etl_run, tmp_path, pushgateway, host):
    job = unique_job()
    block = {"type": "prometheus", "pushgateway": pushgateway.url, "job": job, "group_by_run": True}
    etl_run(pipeline(tmp_path, [block]), host=host, run_id="nightly-7")
    found = pushgateway.samples(job)
    key = frozenset({"pipeline": "metrics_demo", "run_id": "nightly-7"}.items())
    assert found[("etl_run_success", key)] == 1


def test_a_gateway_that_is_down_never_fails_the_run(etl_run, tmp_path, host):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("etl.run")
    logger.addHandler(handler)
    try:
        block = {"type": "prometheus", "pushgateway": f"http://127.0.0.1:{port}", "timeout": 2}
        metrics = etl_run(pipeline(tmp_path, [block]), host=host)
    finally:
        logger.removeHandler(handler)
    assert metrics.status == "succeeded"
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("etl: metrics reporter prometheus failed:")


def test_the_readme_documents_every_metric():
    documented = set(re.findall(r"^\| `(etl_[a-z_]+)` \|", README.read_text(), re.M))
    assert documented == METRIC_NAMES
