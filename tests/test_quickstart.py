"""End to end through the CLI, in-process (click's runner) on the shared Spark session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from etl_core.cli import main

pytestmark = pytest.mark.spark
QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def quickstart(tmp_path: Path, etl_spark) -> Path:
    target = tmp_path / "examples" / "quickstart"
    shutil.copytree(QUICKSTART, target, ignore=shutil.ignore_patterns("output", ".etl"))
    return target / "pipeline.yaml"


def test_quickstart_runs_and_reports_counts(quickstart: Path, monkeypatch):
    monkeypatch.chdir(quickstart.parents[2])  # as the docs run it: from the repository's root
    result = CliRunner().invoke(main, ["run", "examples/quickstart/pipeline.yaml"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(quickstart.parent / "output" / "paid_orders")
    assert table.num_rows == 52
    assert set(table.column("status").to_pylist()) == {"paid"}
    assert {"order_id", "user_id", "amount", "name", "country"} <= set(table.column_names)
    for line in ("users  ", "orders  ", "orders_with_users", "paid_orders_parquet"):
        assert line in result.stdout
    assert "users                extract    20" in result.stdout
    assert "orders               extract    100" in result.stdout
    assert "paid_orders_parquet  load       52  → path examples/quickstart/output/paid_orders" in (
        result.stdout
    )
    assert "Traceback" not in result.output
    # the report the docs show is this one, line for line (but the run id and the time)
    report = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    for page in ("getting-started.md", "user-guide.md", "cli.md"):
        text = (QUICKSTART.parents[1] / "docs" / page).read_text()
        shown = text.split("of quickstart: succeeded in", 1)[1].split("```", 1)[0]
        assert [line for line in shown.splitlines() if line.startswith("  ")] == report, page


def test_rerun_overwrites_instead_of_duplicating(quickstart: Path):
    for _ in range(2):
        result = CliRunner().invoke(main, ["--quiet", "run", str(quickstart)])
        assert result.exit_code == 0, result.output
    assert pq.read_table(quickstart.parent / "output" / "paid_orders").num_rows == 52


def test_failed_run_exits_1_with_one_message(quickstart: Path):
    ok = CliRunner().invoke(main, ["run", str(quickstart)])
    assert ok.exit_code == 0, ok.output
    output = quickstart.parent / "output" / "paid_orders"
    before = sorted(p.name for p in output.iterdir())
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(quickstart),
            "--set",
            "transforms.paid_orders.condition=raise_error('bad') IS NULL",
        ],
    )
    assert result.exit_code == 1
    assert "error: sinks.paid_orders_parquet: staging failed" in result.stderr
    assert "Traceback" not in result.output and "\tat " not in result.output
    assert sorted(p.name for p in output.iterdir()) == before
    assert pq.read_table(output).num_rows == 52


def test_analysis_error_exits_2_before_any_job(quickstart: Path):
    result = CliRunner().invoke(
        main,
        ["run", str(quickstart), "--set", "transforms.paid_orders.condition=no_such_column > 1"],
    )
    assert result.exit_code == 2
    assert "transforms.paid_orders" in result.stderr and "no_such_column" in result.stderr
    assert not (quickstart.parent / "output").exists()


def test_debug_shows_the_traceback(quickstart: Path):
    result = CliRunner().invoke(
        main,
        ["--debug", "run", str(quickstart), "--set", "sinks.paid_orders_parquet.mode=sideways"],
    )
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert "sinks.paid_orders_parquet.mode" in result.stderr
