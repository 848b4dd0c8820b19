"""The conformance suite for state stores (incremental bookmarks): subclass, name the store, give
its ``state:`` block, and get the tests.

.. code-block:: python

    class TestMyStore(StateStoreConformance):
        component = "mine"

        def state_block(self, tmp_path): ...   # the `state:` block, with `type`

Each test runs a ``files`` source read incrementally (``{by: modified_time}``) into a ``files``
sink on the shared ``etl_spark`` session, each run with a fresh plugin host, so a bookmark can
only come from the store. Two runs at once are made by starting the second from inside the
first (from its ``etl_stage_finished`` hook, after it read and before it publishes), which is
exactly the window a concurrent run would hit; the store's :meth:`~etl_core.StateStore.hold`
must refuse it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from etl_core.errors import EtlError, RunLocked
from etl_core.markers import hookimpl
from etl_core.plugins import get_plugin_host
from etl_core.testing.fixtures import run_pipeline

__all__ = ["StateStoreConformance"]


class StateStoreConformance:
    """Tests every state store must pass."""

    component: ClassVar[str]

    def state_block(self, tmp_path: Path) -> dict[str, Any]:
        """The pipeline's ``state:`` block (``type`` and options) on a fresh namespace."""
        raise NotImplementedError

    def credentials(self) -> dict[str, Any]:
        """The pipeline's ``credentials:`` section, when the ``state:`` block names an entry."""
        return {}

    @staticmethod
    def add_file(folder: Path, name: str, rows: int, age_s: float = 0.0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        path.write_text("id\n" + "".join(f"{i}\n" for i in range(rows)))
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))

    def rows_read(
        self, etl_spark: Any, tmp_path: Path, sink: dict | None = None, observer: object = None
    ) -> int:
        pipeline = {
            "name": "state_conformance",
            "credentials": self.credentials(),
            "state": self.state_block(tmp_path),
            "sources": {
                "src": {
                    "type": "files",
                    "format": "csv",
                    "path": str(tmp_path / "in"),
                    "read_schema": "id BIGINT",
                    "incremental": {"by": "modified_time"},
                }
            },
            "sinks": {
                "out": sink or {"type": "files", "input": "src", "path": "out", "mode": "append"}
            },
        }
        host = get_plugin_host()  # nothing carried over from the last run but the store
        with host.observing(*[o for o in [observer] if o is not None]):
            metrics = run_pipeline(pipeline, spark=etl_spark, host=host, base_dir=tmp_path)
        extract = metrics.stage("src", "extract")
        assert extract is not None and extract.rows_out is not None, metrics.stages
        return extract.rows_out

    def test_a_bookmark_survives_a_restart(self, etl_spark, tmp_path):
        self.add_file(tmp_path / "in", "a", 3, age_s=60)
        self.add_file(tmp_path / "in", "b", 2, age_s=30)
        assert self.rows_read(etl_spark, tmp_path) == 5
        assert self.rows_read(etl_spark, tmp_path) == 0
        self.add_file(tmp_path / "in", "c", 4)
        assert self.rows_read(etl_spark, tmp_path) == 4

    def test_a_bookmark_moves_only_after_publishing(self, etl_spark, tmp_path):
        self.add_file(tmp_path / "in", "a", 3, age_s=60)
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "old.csv").write_text("id\n1\n")
        refused = {"type": "files", "input": "src", "path": "taken", "mode": "error"}
        with pytest.raises(EtlError, match="already holds data"):
            self.rows_read(etl_spark, tmp_path, sink=refused)
        assert self.rows_read(etl_spark, tmp_path) == 3  # the failed run moved nothing
        assert self.rows_read(etl_spark, tmp_path) == 0

    def test_two_concurrent_runs_cannot_both_move_a_bookmark(self, etl_spark, tmp_path):
        self.add_file(tmp_path / "in", "a", 3, age_s=60)
        second: list[Any] = []  # what the run started inside the first one got
        suite = self

        class SecondRun:
            @hookimpl
            def etl_stage_finished(self, pipeline: str, run_id: str, stage: Any) -> None:
                if not second:
                    try:
                        second.append(suite.rows_read(etl_spark, tmp_path))
                    except EtlError as exc:
                        second.append(exc)

        assert self.rows_read(etl_spark, tmp_path, observer=SecondRun()) == 3
        assert len(second) == 1 and isinstance(second[0], RunLocked), second
        assert "another run holds its incremental bookmarks" in str(second[0])
        assert self.rows_read(etl_spark, tmp_path) == 0  # moved once, by the first run
        self.add_file(tmp_path / "in", "b", 2)
        assert self.rows_read(etl_spark, tmp_path) == 2  # the hold ended with the run
