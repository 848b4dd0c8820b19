"""The conformance suite for transformers: subclass, name the transformer, give its block and
its input datasets, and get the tests.

.. code-block:: python

    class TestMyTransform(TransformerConformance):
        component = "mine"
        block = {"type": "mine", "column": "id"}             # without `inputs`
        inputs = {"orders": ("id BIGINT, total DOUBLE", [{"id": 1, "total": 2.5}])}

The datasets are written as Parquet and read with the ``files`` source, so the tests run
``files`` → the transformer → ``files`` on the shared ``etl_spark`` session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from etl_core import config
from etl_core.errors import ConfigError
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.testing.fixtures import run_pipeline

__all__ = ["TransformerConformance"]


class TransformerConformance:
    """Tests every transformer must pass."""

    component: ClassVar[str]
    #: the transform block without ``inputs`` (``type`` and options)
    block: ClassVar[Mapping[str, Any]]
    #: input name → (DDL schema, rows), in the order the block lists them
    inputs: ClassVar[Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]]]

    @pytest.fixture
    def conformance_host(self) -> PluginHost:
        return get_plugin_host()

    def pipeline(self, tmp_path: Path, input_names: Sequence[str]) -> dict[str, Any]:
        """Sources for ``input_names`` (extra names repeat the last input), the transform ``t``
        reading them, and a Parquet sink ``out``."""
        sources = {}
        for name in input_names:
            ddl, rows = self.inputs.get(name) or list(self.inputs.values())[-1]
            sources[name] = self.source(tmp_path / "in" / name, ddl, rows)
        return {
            "name": "transformer_conformance",
            "sources": sources,
            "transforms": {"t": {**self.block, "inputs": list(input_names)}},
            "sinks": {"out": {"type": "files", "input": "t", "path": str(tmp_path / "out")}},
        }

    @staticmethod
    def source(folder: Path, ddl: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import json

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rows.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        return {"type": "files", "format": "jsonl", "path": str(folder), "read_schema": ddl}

    def test_declared_input_arity_is_enforced(self, conformance_host, tmp_path):
        low, high = conformance_host.component("transformer", self.component).inputs
        names = list(self.inputs)
        assert low <= len(names) and (high is None or len(names) <= high)
        config.check(data=self.pipeline(tmp_path, names), host=conformance_host)
        wrong = [n for n in (low - 1, None if high is None else high + 1) if n]
        for count in wrong:
            extra = [*names, *(f"more_{i}" for i in range(count - len(names)))][:count]
            with pytest.raises(ConfigError, match=r"transforms\.t\.inputs: .* input\(s\), got"):
                config.check(data=self.pipeline(tmp_path, extra), host=conformance_host)
        if not wrong:  # no bound to break: (1, None) takes one input or many
            config.check(data=self.pipeline(tmp_path, [*names, "more"]), host=conformance_host)

    def test_the_plans_schema_is_the_results(self, etl_spark, conformance_host, tmp_path):
        from etl_core.run.runner import build_datasets

        pipeline = self.pipeline(tmp_path, list(self.inputs))
        bound = config.check(data=pipeline, host=conformance_host)
        planned = build_datasets(bound, conformance_host, etl_spark)["t"].schema
        metrics = run_pipeline(pipeline, spark=etl_spark, host=conformance_host)
        assert metrics.status == "succeeded"
        written = etl_spark.read.parquet(str(tmp_path / "out")).schema
        assert [(f.name, f.dataType) for f in written] == [(f.name, f.dataType) for f in planned]
