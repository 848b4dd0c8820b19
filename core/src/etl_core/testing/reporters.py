"""The conformance suite for metrics reporters: subclass, name the reporter, say how to read back
what it reported, and get the tests.

.. code-block:: python

    class TestMyReporter(MetricsReporterConformance):
        component = "mine"

        def reporter_block(self, tmp_path): ...       # the `metrics:` entry, with `type`
        def reported(self, tmp_path, metrics): ...    # {(dataset, stage): rows} it received
        def failing_block(self, tmp_path): ...        # an entry whose backend is down

Each test runs a small ``files`` → ``files`` pipeline (a source, a ``filter`` transform, a
sink) on the shared ``etl_spark`` session with the reporter in its ``metrics:`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from etl_core.api import RunMetrics
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.testing.fixtures import run_pipeline
from etl_core.testing.harness import SECRET_MARKER

__all__ = ["MetricsReporterConformance"]

ROWS = 7


class MetricsReporterConformance:
    """Tests every metrics reporter must pass."""

    component: ClassVar[str]

    # -- hooks the subclass provides -------------------------------------------------------
    def reporter_block(self, tmp_path: Path) -> dict[str, Any]:
        """The reporter's entry of ``metrics:`` (``type`` and options)."""
        raise NotImplementedError

    def reported(self, tmp_path: Path, metrics: RunMetrics) -> Mapping[tuple[str, str], float]:
        """What the backend received for the run ``metrics`` describes: rows per
        ``(dataset, stage)``."""
        raise NotImplementedError

    def failing_block(self, tmp_path: Path) -> dict[str, Any]:
        """An entry whose backend cannot be reached (a closed port, a missing bucket...). It may
        hold ``SECRET_MARKER`` as a credential: the suite checks it never shows."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------------
    @pytest.fixture
    def conformance_host(self) -> PluginHost:
        return get_plugin_host()

    def run_with(self, etl_spark: Any, host: PluginHost, tmp_path: Path, block: dict) -> Any:
        source = tmp_path / "in.csv"
        source.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, ROWS + 1)))
        pipeline = {
            "name": "reporter_conformance",
            "sources": {
                "rows": {
                    "type": "files",
                    "format": "csv",
                    "path": str(source),
                    "read_schema": "id BIGINT, name STRING",
                }
            },
            "transforms": {"kept": {"type": "filter", "inputs": ["rows"], "condition": "id > 2"}},
            "sinks": {"out": {"type": "files", "input": "kept", "path": str(tmp_path / "out")}},
            "metrics": [block],
        }
        return run_pipeline(pipeline, spark=etl_spark, host=host, base_dir=tmp_path)

    # -- the tests -------------------------------------------------------------------------
    def test_receives_the_runs_metrics(self, etl_spark, conformance_host, tmp_path):
        block = self.reporter_block(tmp_path)
        assert block["type"] == self.component
        metrics = self.run_with(etl_spark, conformance_host, tmp_path, block)
        assert metrics.status == "succeeded"
        received = self.reported(tmp_path, metrics)
        assert received[("rows", "extract")] == ROWS
        assert received[("out", "load")] == ROWS - 2

    def test_a_failing_reporter_never_fails_the_run(
        self, etl_spark, conformance_host, tmp_path, caplog
    ):
        etl_logger = logging.getLogger("etl")  # the CLI may have stopped it propagating
        etl_logger.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.WARNING, logger="etl"):
                metrics = self.run_with(
                    etl_spark, conformance_host, tmp_path, self.failing_block(tmp_path)
                )
        finally:
            etl_logger.removeHandler(caplog.handler)
        assert metrics.status == "succeeded"
        assert (tmp_path / "out").is_dir()  # the sink published
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(self.component in w and "failed" in w for w in warnings), warnings
        assert not any(SECRET_MARKER in w for w in warnings)
