"""The public contracts: component interfaces, their context, secrets, metrics, dead letters.

Plugins import from here (or from ``etl_core``); everything else in the package is internal.
This module imports no Spark at run time, so loading a plugin stays cheap.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core.errors import (
    ConfigError,
    EtlError,
    LoadError,
    PermanentError,
    PluginError,
    RunFailed,
    SecretError,
    TransientError,
    UnknownComponentError,
    ValidationFailed,
)
from etl_core.metrics import METRIC_NAMES, MetricFamily, MetricSample, metric_families

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = [
    "CAPABILITIES",
    "DEAD_LETTER_DDL",
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
    "Loader",
    "MetricFamily",
    "MetricSample",
    "MetricsReporter",
    "MicroBatchMetrics",
    "NoOptions",
    "PermanentError",
    "PluginError",
    "Rejected",
    "RuleResult",
    "RunFailed",
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
    "metric_families",
]

CAPABILITIES = frozenset(
    {"batch", "streaming", "upsert", "exactly_once", "partitioned_read", "incremental"}
)
STAGES = ("extract", "validate", "transform", "load")


class Secret:
    """A secret value. Prints as ``***`` everywhere; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Secret) and type(other) is type(self) and other._value == self._value
        )

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._value,))


class SecretRef(Secret):
    """An unresolved reference such as ``env:PG_PASSWORD`` or ``vault:etl/warehouse#password``.

    Config holds these; the runner replaces them with resolved :class:`Secret` values just
    before a component uses them.
    """

    __slots__ = ("field", "path", "provider")

    def __init__(self, provider: str, path: str, field: str | None = None):
        super().__init__("")
        self.provider, self.path, self.field = provider, path, field

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        provider, sep, rest = text.partition(":")
        path, _, field = rest.partition("#")
        if not sep or not provider or not path:
            raise ValueError(
                f"secret reference {text!r} must look like 'provider:path' or "
                "'provider:path#field', e.g. 'env:PG_PASSWORD'"
            )
        return cls(provider, path, field or None)

    def reveal(self) -> str:
        raise SecretError(f"secret reference {self} was used before it was resolved")

    def __repr__(self) -> str:
        return f"SecretRef({self.provider}:{self.path}{'#' + self.field if self.field else ''})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.provider, self.path, self.field))


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
    read_schema: str | None = None
    #: the source's ``incremental:`` block (e.g. ``{column: updated_at}``), if any
    incremental: Mapping[str, Any] | None = None
    bookmark: Any = None
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("etl"))
    _propose_bookmark: Callable[[str, Any], None] | None = attrs.field(default=None, repr=False)
    _dead_letter: Callable[[str, str, str, DataFrame], None] | None = attrs.field(
        default=None, repr=False
    )
    #: whether the pipeline has a dead-letter sink (``errors.dead_letter``): the built-in
    #: components route malformed rows and failed casts only then, and behave as before without
    dead_letter_sink: bool = False
    _persist: Callable[[DataFrame], DataFrame] | None = attrs.field(default=None, repr=False)
    _report_rows: Callable[[int], None] | None = attrs.field(default=None, repr=False)

    def path(self, value: str | Path) -> Path:
        """A path from the config, relative to the pipeline file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

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


class Component(ABC):
    """What every component type declares. Subclasses set the class attributes."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"batch"})

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
        raise PermanentError(f"{self.name} does not support streaming")

    def replay(self, ctx: Context, options: Any, records: DataFrame, schema: Any) -> DataFrame:
        """Rows of this source's ``extract`` dead letters (``etl dlq replay``), parsed back into
        ``schema`` (the source's schema now). By default each record's ``row`` is JSON."""
        from pyspark.sql import functions as F

        return records.select(F.from_json("row", schema).alias("r")).select("r.*")


class Transformer(Component):
    #: How many inputs the transform takes: ``(min, max)``, ``max`` ``None`` for no limit.
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)

    @abstractmethod
    def transform(self, ctx: Context, inputs: Mapping[str, DataFrame], options: Any) -> DataFrame:
        """Build the output from the named inputs, lazily (no Spark action)."""

    def check(self, inputs: Sequence[str], options: Any) -> list[str]:
        """Problems found without data (called by ``etl validate``); empty when fine."""
        return []


@attrs.frozen
class RuleResult:
    rule: str
    severity: str
    passed: bool
    failed_rows: int | None = None
    message: str = ""


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


class Loader(Component):
    """Two-phase writer: ``stage`` moves the rows, ``publish`` makes them visible atomically."""

    modes: ClassVar[frozenset[str]] = frozenset({"append", "overwrite", "error"})

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

    def close(self) -> None:
        """Release leases at the end of the run."""


@attrs.define
class StageMetrics:
    """One dataset's stage. ``rows_out`` is what the stage passed on (rows read for extract,
    written for load), ``None`` where no action computed it; ``duration_s`` is timed where one
    Spark action does the stage's work (load: the staging action, which also computes the lazy
    extract and transform stages feeding it)."""

    dataset: str
    stage: str
    component: str
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int = 0
    dead_lettered: int = 0
    bytes: int | None = None
    duration_s: float | None = None


@attrs.define
class MicroBatchMetrics:
    """One streaming micro-batch, filled from the query's progress."""

    batch_id: int
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    batch_duration_s: float | None = None
    watermark: str | None = None
    state_rows: int | None = None
    lag: int | None = None


@attrs.define
class RunMetrics:
    """What one run did, from the counts observed in the actions that moved the data."""

    pipeline: str
    run_id: str
    run_key: str
    status: str = "running"
    started_at: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    stages: list[StageMetrics] = attrs.field(factory=list)
    published: list[str] = attrs.field(factory=list)
    retries: int = 0
    breaker_states: dict[str, str] = attrs.field(factory=dict)
    dead_letters: int = 0
    quality: list[RuleResult] = attrs.field(factory=list)
    streaming: list[MicroBatchMetrics] = attrs.field(factory=list)
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def stage(self, dataset: str, stage: str) -> StageMetrics | None:
        return next((s for s in self.stages if (s.dataset, s.stage) == (dataset, stage)), None)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        data["duration_s"] = self.duration_s
        return data


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


@attrs.frozen
class Rejected:
    """A row the target refused while publishing: the row as JSON and the database's reason."""

    row: str
    message: str
    #: what refused it, e.g. the constraint's name
    rule: str = "load"


@attrs.frozen
class DeadLetterError:
    rule: str
    message: str
    severity: str = "error"


@attrs.frozen
class DeadLetterRecord:
    """One rejected row (DESIGN §7). ``row`` is the original row as JSON, secrets redacted."""

    pipeline: str
    run_id: str
    stage: str
    component: str
    dataset: str
    errors: tuple[DeadLetterError, ...]
    timestamp: dt.datetime
    source_position: str | None
    row: str


#: The Spark schema of a DataFrame of dead-letter records.
DEAD_LETTER_DDL = (
    "pipeline STRING, run_id STRING, stage STRING, component STRING, dataset STRING, "
    "errors ARRAY<STRUCT<rule: STRING, message: STRING, severity: STRING>>, "
    "timestamp TIMESTAMP, source_position STRING, row STRING"
)
