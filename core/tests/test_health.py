"""The health server's endpoints, in-process, around a real run on the shared session."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from etl_core import config
from etl_core.health import HealthServer, RunControl, RunInterrupted
from etl_core.run.runner import run

pytestmark = pytest.mark.spark


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_health_ready_and_metrics(tmp_path, etl_spark, etl_host):
    (tmp_path / "users.csv").write_text("user_id,name\n1,ann\n2,bob\n")
    spec = {
        "name": "healthy",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING",
            }
        },
        "sinks": {"out": {"type": "files", "input": "users", "format": "parquet", "path": "out"}},
    }
    control = RunControl()
    with HealthServer(control, 0) as server:
        assert get(server.port, "/health")[0] == 200
        assert get(server.port, "/ready")[0] == 503
        assert get(server.port, "/metrics")[::2] == (200, "")
        assert get(server.port, "/nope")[0] == 404

        bound = config.check(data=spec, base_dir=tmp_path, host=etl_host)
        run(bound, etl_host, spark=etl_spark, control=control)

        assert get(server.port, "/ready")[0] == 200
        status, content_type, text = get(server.port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    lines = text.splitlines()
    assert "# TYPE etl_rows_total counter" in lines
    assert 'etl_rows_total{pipeline="healthy",dataset="users",stage="extract"} 2' in lines
    assert 'etl_rows_total{pipeline="healthy",dataset="out",stage="load"} 2' in lines
    assert 'etl_run_success{pipeline="healthy"} 1' in lines
    assert 'etl_published_datasets{pipeline="healthy"} 1' in lines


def test_the_metrics_page_is_valid_prometheus_text(tmp_path):
    parser = pytest.importorskip("prometheus_client.parser")
    from etl_core import RunMetrics, StageMetrics
    from etl_core.metrics import metric_families, render_text

    metrics = RunMetrics(pipeline='we"ird\\name', run_id="r", run_key="k")
    metrics.stages.append(StageMetrics("a\nb", "load", "files", rows_out=5, duration_s=0.25))
    families = {
        f.name: f
        for f in parser.text_string_to_metric_families(render_text(metric_families(metrics)))
    }
    (sample,) = families["etl_rows"].samples
    assert sample.labels == {"pipeline": 'we"ird\\name', "dataset": "a\nb", "stage": "load"}
    assert sample.value == 5


def test_a_stop_request_before_publishing_interrupts_the_run():
    control = RunControl()
    control.request_stop(15)
    with pytest.raises(RunInterrupted, match="interrupted by SIGTERM") as caught:
        control.start_publishing()
    assert caught.value.exit_code == 143
