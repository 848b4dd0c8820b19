"""The notebook API: build, check, run and inspect a pipeline from Python.

>>> from etl_core import Pipeline
>>> p = Pipeline.from_file("pipeline.yaml").validate()
>>> p.dataset("paid_orders").limit(5).collect()
>>> p.run()          # a RunReport: a table in Jupyter, the CLI's text elsewhere

A :class:`Pipeline` re-reads its configuration (the file, or the mapping it was given) on every
call and rebinds only when it changed; the DataFrames built for :meth:`Pipeline.dataset` are
kept until then. Spark is the process's session (:func:`etl_core.run.engine.get_spark`): an active
session is reused as it is. Importing this module imports no Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from etl_core import config
from etl_core.api import RunMetrics, StageMetrics
from etl_core.config import BoundPipeline, PipelineSpec
from etl_core.config.convert import allow_plaintext
from etl_core.errors import ConfigIssue, EtlError
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.report import render_html, render_report

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["Pipeline", "RunReport"]


class RunReport:
    """What one run did: wraps :class:`~etl_core.api.RunMetrics` (``.metrics``).

    Jupyter shows it as an HTML table (dataset, stage, rows) with the status, run id, duration
    and published sinks; ``repr`` gives the text ``etl run`` prints."""

    def __init__(self, metrics: RunMetrics):
        self.metrics = metrics

    @property
    def status(self) -> str:
        return self.metrics.status

    @property
    def run_id(self) -> str:
        return self.metrics.run_id

    @property
    def pipeline(self) -> str:
        return self.metrics.pipeline

    @property
    def published(self) -> list[str]:
        return list(self.metrics.published)

    @property
    def duration_s(self) -> float | None:
        return self.metrics.duration_s

    @property
    def error(self) -> str | None:
        return self.metrics.error

    @property
    def stages(self) -> list[StageMetrics]:
        return list(self.metrics.stages)

    def rows(self, dataset: str, stage: str | None = None) -> int | None:
        """Rows out of ``dataset`` (at ``stage``, or at its only stage); ``None`` when that
        dataset was not computed. A sink's rows are its ``load`` stage."""
        for item in self.metrics.stages:
            if item.dataset == dataset and (stage is None or item.stage == stage):
                return item.rows_out
        where = f" at stage {stage!r}" if stage else ""
        known = ", ".join(sorted({s.dataset for s in self.metrics.stages})) or "none"
        raise KeyError(f"no dataset {dataset!r}{where} in this run (datasets: {known})")

    def to_dict(self) -> dict[str, Any]:
        return self.metrics.to_dict()

    def __repr__(self) -> str:
        return render_report(self.metrics)

    def _repr_html_(self) -> str:
        return render_html(self.metrics)


class Pipeline:
    """A pipeline from a file (:meth:`from_file`) or built in code from a mapping in the same
    shape as the file (or an already loaded :class:`~etl_core.config.PipelineSpec`).

    A mapping is kept by reference: edit it and the next call sees the change. Relative paths
    in it resolve against ``base_dir`` (default: the working directory when the pipeline is
    made); a file's resolve against its folder. ``host`` defaults to a fresh plugin host with
    the installed plugins (entry points) loaded.
    """

    def __init__(
        self,
        pipeline: Mapping[str, Any] | PipelineSpec,
        base_dir: str | Path | None = None,
        *,
        overrides: Sequence[str] = (),
        allow_plaintext_secrets: bool = False,
        host: PluginHost | None = None,
    ):
        if not isinstance(pipeline, Mapping | PipelineSpec):
            raise TypeError(
                "Pipeline() takes a mapping shaped like the pipeline file or a PipelineSpec; "
                f"got {type(pipeline).__name__} (for a file, use Pipeline.from_file(path))"
            )
        self._path: Path | None = None
        self._data: Mapping[str, Any] | None = None
        self._spec: PipelineSpec | None = None
        if isinstance(pipeline, PipelineSpec):
            if base_dir is not None:
                pipeline = attrs.evolve(pipeline, base_dir=Path(base_dir).resolve())
            self._spec = pipeline
        else:
            self._data = pipeline
        self._base_dir = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        self._overrides = tuple(overrides)
        self._allow_plaintext = allow_plaintext_secrets
        self.host = host if host is not None else get_plugin_host()
        self._bound_cache: BoundPipeline | None = None
        self._frames: dict[str, DataFrame] | None = None
        self._frames_spark: SparkSession | None = None

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        overrides: Sequence[str] = (),
        allow_plaintext_secrets: bool = False,
        host: PluginHost | None = None,
    ) -> Pipeline:
        """A pipeline file (YAML, JSON or TOML), with ``--set``-style ``overrides``
        (``["sources.orders.path=data/2024.csv"]``). The file is read again on every call."""
        self = cls(
            {}, overrides=overrides, allow_plaintext_secrets=allow_plaintext_secrets, host=host
        )
        self._data = None
        self._path = Path(path).resolve()
        self._base_dir = self._path.parent
        return self

    # --- configuration ---------------------------------------------------------------------

    def _load(self) -> tuple[PipelineSpec, list[ConfigIssue]]:
        issues: list[ConfigIssue] = []
        if self._spec is not None:
            return self._spec, issues
        if self._path is not None:
            spec = config.load(self._path, overrides=self._overrides, issues=issues)
        else:
            spec = config.load(
                data=self._data, overrides=self._overrides, base_dir=self._base_dir, issues=issues
            )
        return spec, issues

    def _bound(self) -> BoundPipeline:
        """The bound pipeline, rebound (and the built frames dropped) when the config changed."""
        spec, issues = self._load()
        cached = self._bound_cache
        if not issues and cached is not None and cached.spec == spec:
            return cached
        self._bound_cache = None
        self._frames = None
        token = allow_plaintext.set(self._allow_plaintext)
        try:
            bound = config.bind(spec, self.host, issues)
        finally:
            allow_plaintext.reset(token)
        self._bound_cache = bound
        return bound

    def validate(self) -> Pipeline:
        """Check everything that needs no data (no Spark). Raises
        :class:`~etl_core.errors.ConfigError` listing every issue; returns the pipeline."""
        self._bound()
        return self

    @property
    def name(self) -> str:
        return self._bound().spec.name

    @property
    def spec(self) -> PipelineSpec:
        """The loaded, checked configuration."""
        return self._bound().spec

    @property
    def datasets(self) -> tuple[str, ...]:
        """The names of the sources and transforms, in dependency order."""
        return self._bound().plan.order

    @property
    def sinks(self) -> tuple[str, ...]:
        return self._bound().plan.sinks

    # --- Spark -----------------------------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        """The process's Spark session: the active one, or one started with the pipeline's
        ``engine`` block."""
        return _session(self._bound().spec)

    def dataset(self, name: str) -> DataFrame:
        """The dataset ``name`` (a source or transform) as a lazy DataFrame: nothing is staged
        or published. Built once for all datasets, kept until the config or the session
        changes."""
        from etl_core.run import runner

        bound = self._bound()
        spark = _session(bound.spec)
        if self._frames is None or self._frames_spark is not spark:
            self._frames = None
            self._frames = runner.build_datasets(bound, self.host, spark)
            self._frames_spark = spark
        if name not in self._frames:
            if name in bound.spec.sinks:
                hint = f"{name!r} is a sink; its input is {bound.spec.sinks[name].input!r}"
            else:
                hint = f"no dataset {name!r}"
            known = ", ".join(bound.plan.order) or "none"
            raise KeyError(f"{hint} (datasets: {known})")
        return self._frames[name]

    def run(
        self, run_id: str | None = None, *, progress: Callable[[str], None] | None = None
    ) -> RunReport:
        """Run the pipeline once, as ``etl run`` does (stage every sink, check, publish).

        A failed run raises its :class:`~etl_core.errors.EtlError`; the report of what it did
        is on the exception as ``exc.report`` (when the run got that far)."""
        from etl_core.run import runner

        bound = self._bound()
        try:
            metrics = runner.run(bound, self.host, run_id=run_id, progress=progress)
        except EtlError as exc:
            partial = getattr(exc, "metrics", None)
            if partial is not None:
                exc.report = RunReport(partial)  # type: ignore[attr-defined]
            raise
        finally:
            self._frames = None  # a run may move bookmarks, which change what sources read
        return RunReport(metrics)

    def __repr__(self) -> str:
        if self._path is not None:
            return f"Pipeline.from_file({str(self._path)!r})"
        name = self._spec.name if self._spec is not None else (self._data or {}).get("name")
        return f"<etl Pipeline {name!r} built in code, base_dir {str(self._base_dir)!r}>"


def _session(spec: PipelineSpec) -> SparkSession:
    from etl_core.run.engine import get_spark

    return get_spark(spec.engine, app_name=f"etl:{spec.name}")
