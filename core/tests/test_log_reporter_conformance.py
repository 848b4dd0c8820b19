"""The built-in ``log`` metrics reporter through etl_core's reporter suite."""

from __future__ import annotations

import json

import pytest

from etl_core.testing import MetricsReporterConformance

pytestmark = pytest.mark.spark


class TestLogReporterConformance(MetricsReporterConformance):
    component = "log"

    def reporter_block(self, tmp_path):
        return {"type": "log", "path": str(tmp_path / "metrics.jsonl")}

    def reported(self, tmp_path, metrics):
        lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        return {
            (line["dataset"], line["stage"]): line["rows_out"]
            for line in lines
            if line["event"] == "stage" and line["run_id"] == metrics.run_id
        }

    def failing_block(self, tmp_path):
        blocker = tmp_path / "a-file"
        blocker.write_text("where the reporter needs a folder")
        return {"type": "log", "path": str(blocker / "metrics.jsonl")}
