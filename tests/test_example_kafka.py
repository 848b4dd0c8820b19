"""examples/kafka end to end, as its README runs it: its broker (the mock cluster), then the
streaming pipeline twice, with more events between."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.spark
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kafka"


def letters(folder: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in folder.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            stage = json.loads(line)["stage"]
            found[stage] = found.get(stage, 0) + 1
    return found


def test_the_kafka_example_streams_as_its_readme_says(tmp_path, etl_run, monkeypatch):
    shutil.copytree(EXAMPLE, tmp_path / "kafka")
    broker = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "broker.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert broker.stdout is not None
        line = broker.stdout.readline().strip()
        assert line.startswith("KAFKA_BOOTSTRAP="), line
        monkeypatch.setenv("KAFKA_BOOTSTRAP", line.split("=", 1)[1])
        pipeline = tmp_path / "kafka" / "pipeline.yaml"
        first = etl_run(pipeline, plugins=True, base_dir=pipeline.parent)
        assert [b.batch_id for b in first.streaming] == [0, 1]
        output = tmp_path / "kafka" / "output"
        orders = ds.dataset(output / "orders", partitioning="hive").to_table()
        assert orders.num_rows == 188
        assert set(orders.column("country").to_pylist()) == {"de", "fr"}
        assert letters(output / "dlq") == {"extract": 8, "validate": 4}
        more = [sys.executable, str(EXAMPLE / "broker.py"), "--more", "50"]
        done = subprocess.run(more, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "the topic holds 250 events"
        etl_run(pipeline, plugins=True, base_dir=pipeline.parent)
        assert ds.dataset(output / "orders", partitioning="hive").count_rows() == 188 + 47
        assert letters(output / "dlq") == {"extract": 10, "validate": 5}
    finally:
        broker.terminate()
        broker.wait(10)
