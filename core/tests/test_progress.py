"""The progress display: live on a terminal (with Spark's task counts), plain lines elsewhere."""

from __future__ import annotations

import io

import pytest

from etl_core.progress import ConsoleProgress


@pytest.mark.spark
def test_terminal_shows_steps_and_spark_task_counts(etl_spark):
    out = io.StringIO()
    with ConsoleProgress(stream=out, force_terminal=True, poll_s=0.05) as progress:
        progress("counting")
        etl_spark.range(0, 20_000_000, numPartitions=4).selectExpr("sum(id % 7)").collect()
        progress("finishing")
    text = out.getvalue()
    assert "counting" in text and "finishing" in text
    assert "tasks" in text  # e.g. "counting — stage 3: 1/4 tasks"
    assert "✓\x1b[0m counting" in text


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with ConsoleProgress(stream=out) as progress:
        progress("starting Spark")
        progress("staging out (files)")
    assert out.getvalue() == "· starting Spark\n· staging out (files)\n"


def test_quiet_prints_nothing():
    out = io.StringIO()
    with ConsoleProgress(stream=out, quiet=True, force_terminal=True) as progress:
        progress("anything")
    assert out.getvalue() == ""
