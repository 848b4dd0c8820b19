"""The public contracts: component interfaces, their context, secrets, metrics, dead letters.

Plugins import from here (or from ``etl_core``); everything else in the package is internal.
This module imports no Spark at run time, so loading a plugin stays cheap.
"""

from __future__ import annotations

import fcntl
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core.dead_letters import DEAD_LETTER_DDL, DeadLetterError, DeadLetterRecord, Rejected
from etl_core.errors import (
    ConfigError,
    EtlError,
    LoadError,
    PermanentError,
    PluginError,
    PreflightFailed,
    RunFailed,
    RunLocked,
    SecretError,
    TransientError,
    UnknownComponentError,
    ValidationFailed,
)
from etl_core.metrics import (
    METRIC_NAMES,
    MetricFamily,
    MetricSample,
    MicroBatchMetrics,
    RuleResult,
    RunMetrics,
    StageMetrics,
    metric_families,
)
from etl_core.secrets import Secret, SecretRef

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = [
    "CAPABILITIES",
    "DEAD_LETTER_DDL",
    "LOAD_MODES",
    "METRIC_NAMES",
    "ConfigError",
    "Context",
    "CredentialProvider",
    "DeadLetterError",
    "DeadLetterRecord",
    "EtlError",
    "Extractor",
    "LiveRuns",
    "LoadError",
    "LoadMode",
    "Loader",
    "MetricFamily",
    "MetricSample",
    "MetricsReporter",
    "MicroBatchMetrics",
    "NoOptions",
    "PermanentError",
    "PluginError",
    "Preflight",
    "PreflightFailed",
    "Rejected",
    "RuleResult",
    "RunFailed",
    "RunLocked",
    "RunMetrics",
    "Secret",
    "SecretError",
    "SecretRef",
    "StageMetrics",
    "Staged",
    "StateStore",
    "Transformer",
    "TransientError",
    "UnknownComponentError",
    "Validation",
    "ValidationFailed",
    "Validator",
    "exclusive_lock",
    "held_by_another_run",
    "metric_families",
]

CAPABILITIES = frozenset(
    {"batch", "streaming", "stateful", "upsert", "exactly_once", "partitioned_read", "incremental"}
)
STAGES = ("extract", "validate", "transform", "load")


@attrs.frozen
class NoOptions:
    """Options of a component that takes none."""


@attrs.define
class Context:
    """What a component may use while the runner calls it. One per component call.

    ``bookmark`` is the high-water mark stored for this source by the last successful run
    (``None`` the first time); an extractor reading incrementally calls :meth:`propose_bookmark`
    with the new mark, which the runner stores only after every sink has published.
    """

    spark: SparkSession
    pipeline: str
    run_id: str
    run_key: str
    base_dir: Path
    dataset: str
    component: str
    sink_index: int | None = None
    #: a sink's ``on_reject`` (``fail`` or ``dead_letter``): what its loader does with rows
    #: the target refuses (DESIGN §4 step 5)
    on_reject: str = "fail"
    #: a sink's load mode (one of its loader's ``modes``) and, for modes that need it, its key
    mode: str | None = None
    key: tuple[str, ...] = ()
    read_schema: str | None = None
    #: a stream's micro-batch: ``(query id, batch id)``, the query id being the checkpoint's
    #: (DESIGN §9). Sinks that publish exactly once keep the highest batch id they published
    #: per query in their target, and skip a batch at or below it
    micro_batch: tuple[str, int] | None = None
    #: the user accepted a new checkpoint (``etl run --start-over``): a sink whose target took
    #: the batches of another stream query takes this query's from now on
    start_over: bool = False
    #: the source's ``incremental:`` block (e.g. ``{column: updated_at}``), if any
    incremental: Mapping[str, Any] | None = None
    bookmark: Any = None
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("etl"))
    _propose_bookmark: Callable[[str, Any], None] | None = attrs.field(default=None, repr=False)
    _dead_letter: Callable[[str, str, str, DataFrame], None] | None = attrs.field(
        default=None, repr=False
    )
    #: whether the pipeline has a dead-letter sink (``errors.dead_letter``): the built-in
    #: components route malformed rows and failed casts only then; without one, such rows fail
    dead_letter_sink: bool = False
    _persist: Callable[[DataFrame], DataFrame] | None = attrs.field(default=None, repr=False)
    _report_rows: Callable[[int], None] | None = attrs.field(default=None, repr=False)
    _report_merged: Callable[[int, int], None] | None = attrs.field(default=None, repr=False)

    def path(self, value: str | Path) -> Path:
        """A path from the config, relative to the pipeline file's folder."""
        return _config_path(self.base_dir, value)

    def propose_bookmark(self, value: Any) -> None:
        if self._propose_bookmark is None:
            raise EtlError(f"{self.dataset}: bookmarks can only be proposed by sources")
        self._propose_bookmark(self.dataset, value)

    def dead_letter(self, stage: str, records: DataFrame) -> None:
        """Route rejected rows (a DataFrame of :data:`DEAD_LETTER_DDL`) to the dead letters.

        They are staged and published with the run, like any sink.
        """
        if self._dead_letter is None:
            raise EtlError(f"{self.dataset}: no dead-letter route in this context")
        self._dead_letter(stage, self.dataset, self.component, records)

    def persist(self, df: DataFrame) -> DataFrame:
        """Persist ``df`` for the rest of the run (the runner unpersists it at the end): for a
        frame that feeds two writes, such as rows that pass and rows dead-lettered."""
        if self._persist is None:
            return df.persist()
        return self._persist(df)

    def report_rows(self, rows: int) -> None:
        """An extractor that knows exactly how many rows its DataFrame holds without a pass
        over them (Parquet footers, say) reports it here; the runner then adds no count of its
        own to the plan (a count is a pass-through node that breaks Spark's code generation
        and stops filters from being pushed into the scan). Ignored outside sources."""
        if self._report_rows is not None:
            self._report_rows(rows)

    def report_merged(self, inserted: int, updated: int) -> None:
        """A loader publishing an upsert reports how many rows had a key new to the target
        (``inserted``) and how many replaced a row with their key (``updated``): the report
        shows both beside the rows written. Ignored outside a sink's publish."""
        if self._report_merged is not None:
            self._report_merged(inserted, updated)


def _config_path(base_dir: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


@attrs.frozen
class Preflight:
    """What :meth:`Component.preflight` may use: where the block sits. No Spark: preflight runs
    before Spark starts."""

    pipeline: str
    base_dir: Path
    dataset: str
    component: str
    #: a sink's load mode and key (``None``/``()`` elsewhere)
    mode: str | None = None
    key: tuple[str, ...] = ()
    #: the pipeline streams (``execution: streaming``): inputs may not have arrived yet
    streaming: bool = False
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("etl"))

    def path(self, value: str | Path) -> Path:
        """A path from the config, relative to the pipeline file's folder."""
        return _config_path(self.base_dir, value)


class Component(ABC):
    """What every component type declares. Subclasses set the class attributes."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"batch"})

    def preflight(self, ctx: Preflight, options: Any) -> None:
        """Check, before Spark starts, what would make the run fail early: open and close one
        connection with the resolved ``options`` (one attempt, no retry), check that inputs
        and targets exist. Raise :class:`TransientError`/:class:`PermanentError` saying what is
        wrong and the fix; the runner adds the block's path and reports every block's problem
        at once. The default checks nothing."""
        return None

    def endpoint(self, options: Any) -> str | None:
        """The external endpoint this block talks to (``host:port``, a bucket, a topic), so
        that blocks on the same endpoint share one circuit breaker; ``None`` (the default)
        gives the block a breaker of its own. Never include secrets."""
        return None


class Extractor(Component):
    @abstractmethod
    def extract(self, ctx: Context, options: Any) -> DataFrame:
        """Return the source as a lazy DataFrame; the I/O runs on the executors."""

    def check(self, options: Any, *, incremental: Mapping[str, Any] | None) -> list[str]:
        """Problems found without data (called by ``etl validate``); empty when fine."""
        return []

    def extract_stream(self, ctx: Context, options: Any) -> DataFrame:
        """The source as a streaming DataFrame (extractors declaring ``streaming``); the
        runner cuts it into micro-batches and keeps its offsets in the query's checkpoint."""
        raise PermanentError(f"{self.name} does not support streaming")

    def micro_batch(self, ctx: Context, options: Any, rows: DataFrame) -> DataFrame:
        """One micro-batch of :meth:`extract_stream` as the source's dataset of that batch's
        run: the place for what a streaming DataFrame cannot do (routing unreadable records
        to the dead letters, which needs two writes). The default returns ``rows``."""
        return rows

    def replay(
        self, ctx: Context, options: Any, records: DataFrame, schema: Any
    ) -> DataFrame | None:
        """Rows of this source's ``extract`` dead letters (``etl dlq replay``), parsed back into
        ``schema`` (the source's schema now). ``None`` (the default) means each record's
        ``row`` is the row as JSON, and the core parses it."""
        return None


class Transformer(Component):
    #: How many inputs the transform takes: ``(min, max)``, ``max`` ``None`` for no limit.
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)

    @abstractmethod
    def transform(self, ctx: Context, inputs: Mapping[str, DataFrame], options: Any) -> DataFrame:
        """Build the output from the named inputs, lazily (no Spark action)."""

    def check(self, inputs: Sequence[str], options: Any) -> list[str]:
        """Problems found without data (called by ``etl validate``); empty when fine."""
        return []

    # Stateful transformers (capability ``stateful``: windows, deduplication, aggregates) run
    # on a stream's rows inside the streaming query, with their state in the checkpoint; the
    # core asks them two more things.

    def stream_problems(
        self, options: Any, *, watermark: str | None, output_mode: str
    ) -> list[str]:
        """Problems of running across a stream's micro-batches with these options (called by
        ``etl validate``): ``watermark`` is the event-time column of the input (``None``:
        it has none), ``output_mode`` is ``append`` or ``update``. Each says the fix."""
        return []

    def late(self, options: Any, column: str, watermark: Column) -> Column | None:
        """The condition, on the input rows, under which Spark's state drops a row as late:
        ``column`` is the input's event time, ``watermark`` the watermark (a timestamp) the
        micro-batch's state takes late rows by. ``None``: no row is ever late."""
        return None


@attrs.frozen
class Validation:
    """What a validator returns for one rule. Building it runs no Spark action.

    ``flag`` is a boolean column, true where a row breaks the rule (row rules), computed in the
    pass that stages the data. ``aggregates`` are named aggregate columns observed in that same
    pass (dataset rules). After staging the core calls ``verdict`` with the observed values:
    the aggregates by name plus ``failed_rows`` (rows whose flag was true); it returns whether
    the rule passed and a message. Without a verdict, a rule passes when no row broke it.
    ``message`` is what a dead-letter record says about a row that breaks the rule.
    """

    flag: Column | None = None
    aggregates: Mapping[str, Column] = attrs.field(factory=dict)
    verdict: Callable[[Mapping[str, Any]], tuple[bool, str]] | None = None
    message: str = ""

    def judge(self, observed: Mapping[str, Any]) -> tuple[bool, str]:
        if self.verdict is not None:
            return self.verdict(observed)
        failed = observed.get("failed_rows") or 0
        return failed == 0, f"{failed} row(s) broke it: {self.message}" if failed else "ok"


class Validator(Component):
    """One kind of data-quality rule: ``rules: [{<name>: <options>, severity: warning}]``."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def validate(self, ctx: Context, df: DataFrame, options: Any) -> Validation: ...

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        """Options from a non-mapping rule value, e.g. ``not_null: [a, b]``; as is by default."""
        return value

    def check(self, options: Any) -> list[str]:
        """Problems found without data (``etl validate``): a bad regex, min above max…"""
        return []

    def columns(self, options: Any) -> list[str]:
        """Columns the rule reads, checked against a declared schema by ``etl validate``."""
        return []


@attrs.frozen
class Staged:
    """A small handle on staged rows, rebuildable from ``(pipeline, run_id, sink)``."""

    sink: str
    index: int
    run_key: str
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class LiveRuns:
    """Which runs (by ``run_key``) are live, for :meth:`Loader.clean_stale`.

    A run is stale when it is not live and either known dead (its lock file was left behind,
    free) or its staging is older than ``max_age_s`` (its lock may live on another machine).
    """

    live: frozenset[str] = frozenset()
    dead: frozenset[str] = frozenset()
    max_age_s: float = 3600.0

    def __contains__(self, run_key: object) -> bool:
        return run_key in self.live

    def stale(self, run_key: str, modified_at: float) -> bool:
        if run_key in self.live:
            return False
        return run_key in self.dead or time.time() - modified_at > self.max_age_s


@attrs.frozen
class LoadMode:
    """A load mode the core knows (DESIGN §5): the sink keys it needs and the executions it
    exists in. The core validates a sink's ``mode`` and those keys at bind time."""

    name: str
    summary: str
    #: core-owned sink keys the mode needs, e.g. ``("key",)`` for upsert
    needs: tuple[str, ...] = ()
    executions: frozenset[str] = frozenset({"batch", "streaming"})


BATCH_ONLY = frozenset({"batch"})
#: every load mode a loader may declare in :attr:`Loader.modes`
LOAD_MODES: Mapping[str, LoadMode] = {
    mode.name: mode
    for mode in (
        LoadMode("error", "fail if the target holds rows", executions=BATCH_ONLY),
        LoadMode("append", "add the rows"),
        LoadMode("overwrite", "replace every row of the target", executions=BATCH_ONLY),
        LoadMode(
            "overwrite_partitions",
            "replace the partitions the new rows fall in",
            executions=BATCH_ONLY,
        ),
        LoadMode("upsert", "insert new keys, update rows whose key exists", needs=("key",)),
    )
}


class Loader(Component):
    """Two-phase writer: ``stage`` moves the rows, ``publish`` makes them visible atomically.

    ``modes`` lists the load modes the loader supports (names of :data:`LOAD_MODES`), the
    default first. The core checks a sink's ``mode`` and ``key`` against it and hands them to
    the loader as ``ctx.mode`` and ``ctx.key``."""

    modes: ClassVar[tuple[str, ...]] = ("error", "append", "overwrite")

    def check(self, options: Any, *, mode: str, key: Sequence[str]) -> list[str]:
        """Problems found without data (``etl validate``) in ``options`` for this load ``mode``
        (already checked against :attr:`modes`) and ``key``; empty when fine."""
        return []

    @abstractmethod
    def stage(self, ctx: Context, df: DataFrame, options: Any) -> Staged:
        """Write every row into a staging area in one Spark action; publish nothing."""

    @abstractmethod
    def publish(self, ctx: Context, staged: Staged, options: Any) -> Sequence[Rejected] | None:
        """Make the staged rows visible atomically; a no-op if this run already published.

        With ``ctx.on_reject == "dead_letter"`` a loader may commit the rows the target
        accepts and return the ones it refused; the runner publishes those to the dead
        letters right after (DESIGN §4 step 5). Otherwise a refused row fails the publish."""

    @abstractmethod
    def discard(self, ctx: Context, staged: Staged, options: Any) -> None:
        """Drop the staging area; the target stays as it was."""

    def clean_stale(self, ctx: Context, options: Any, live_runs: LiveRuns) -> list[str]:
        """Drop staging left by runs that ``live_runs.stale(...)``; return what was dropped."""
        return []

    def load_stream(self, ctx: Context, df: DataFrame, options: Any) -> Any:
        raise PermanentError(f"{self.name} does not support streaming")

    @classmethod
    def dead_letter_options(cls, options: Any, *, pipeline: str, run_key: str, stage: str) -> Any:
        """Options for writing one stage's dead letters of a run (e.g. a sub-folder per stage)."""
        return options


class CredentialProvider(Component):
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def resolve(self, options: Any) -> Mapping[str, Secret]:
        """Fetch the named fields of one credentials entry."""

    @classmethod
    def options_for_reference(cls, path: str) -> Any:
        """Options for an inline ``{secret: "<name>:<path>#field"}`` reference."""
        raise NotImplementedError(f"{cls.name} does not support inline secret references")

    def expires_in(self) -> float | None:
        """Seconds until some credential this provider resolved stops working for good (its
        lease cannot be renewed past that), or ``None`` when none does. A streaming pipeline
        asks before each micro-batch; when the answer is close, it resolves the credentials
        again through a new instance of the provider and closes this one afterwards."""
        return None

    def close(self) -> None:
        """Release leases at the end of the run."""


class MetricsReporter(Component):
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def report(self, metrics: RunMetrics, options: Any) -> None: ...


class StateStore(Component):
    """Keeps incremental high-water marks per pipeline and source."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def load(self, base_dir: Path, pipeline: str, options: Any) -> dict[str, Any]: ...

    @abstractmethod
    def save(
        self, base_dir: Path, pipeline: str, bookmarks: Mapping[str, Any], options: Any
    ) -> None:
        """Store the new marks (merged over the old ones) atomically."""

    def hold(self, base_dir: Path, pipeline: str, options: Any) -> AbstractContextManager[Any]:
        """Hold the pipeline's bookmarks for one run, from before ``load`` to after ``save``:
        while it is held, another run of the pipeline is refused with :class:`RunLocked`, so
        two runs never both read from one mark and both move it. The default locks the file
        ``.etl/state/<pipeline>.lock`` beside the pipeline, which serves runs on one machine; a
        store that several machines share holds its lock in the shared system instead."""
        return exclusive_lock(
            base_dir / ".etl" / "state" / f"{pipeline}.lock", held_by_another_run(pipeline)
        )


def held_by_another_run(pipeline: str, where: str = "") -> str:
    """The refusal :meth:`StateStore.hold` gives while another run holds the bookmarks."""
    held = f" ({where})" if where else ""
    return (
        f"pipeline {pipeline!r}: another run holds its incremental bookmarks{held}; "
        "wait for it to finish (two runs at once would read the same rows twice)"
    )


@contextmanager
def exclusive_lock(path: Path, refusal: str) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block, or raise
    :class:`RunLocked` with ``refusal`` at once if another process or open file holds it. The
    operating system releases it when the process dies, even by SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(refusal) from None
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
