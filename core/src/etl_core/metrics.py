"""What a run measured (:class:`RunMetrics`: per dataset stage, quality results, micro-batches)
and the metric families every reporter exports from it.

One list of names, types and labels, so the Prometheus reporter, the health server's
``/metrics`` page and the docs never drift apart. Pure Python: no client library needed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "METRIC_NAMES",
    "MetricFamily",
    "MetricSample",
    "MicroBatchMetrics",
    "RuleResult",
    "RunMetrics",
    "StageMetrics",
    "metric_families",
    "render_text",
]


@attrs.frozen
class RuleResult:
    rule: str
    severity: str
    passed: bool
    failed_rows: int | None = None
    message: str = ""


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
    #: load stages: where the rows went (``path …``, ``table …``, ``bucket … prefix …``)
    target: str | None = None
    #: an upsert's published rows whose key was new to the target / already in it, as the
    #: loader counted them while publishing (``Context.report_merged``); ``None`` otherwise
    inserted: int | None = None
    updated: int | None = None


@attrs.define
class MicroBatchMetrics:
    """One streaming micro-batch, filled from the query's progress."""

    batch_id: int
    input_rows_per_second: float | None = None
    processed_rows_per_second: float | None = None
    batch_duration_s: float | None = None
    watermark: str | None = None
    state_rows: int | None = None
    #: rows Spark's stateful operators dropped as late (their ``numRowsDroppedByWatermark``:
    #: a deduplication counts rows; an aggregation counts late groups of the batch, per
    #: window and key)
    dropped_by_watermark: int | None = None
    lag: int | None = None
    #: records behind per source partition (``topic[partition]``), for sources that say
    lag_by_partition: dict[str, int] = attrs.field(factory=dict)
    #: when Spark reported the batch done
    finished_at: str | None = None


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


@attrs.frozen
class MetricSample:
    labels: Mapping[str, str]
    value: float


@attrs.frozen
class MetricFamily:
    """One metric: ``name`` is the exposed name (counters end in ``_total``)."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    samples: tuple[MetricSample, ...]


#: (name, type, help) of every family, in the order they are emitted
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("etl_rows_total", "counter", "Rows out of a dataset's stage (extract: read, load: written)."),
    ("etl_rows_rejected_total", "counter", "Rows a dataset's stage rejected."),
    ("etl_dead_lettered_total", "counter", "Rows of a dataset's stage sent to the dead letters."),
    ("etl_bytes_total", "counter", "Bytes a dataset's stage moved, where the component knows."),
    ("etl_stage_duration_seconds", "gauge", "Wall time of a dataset's stage, where timed."),
    ("etl_dead_letters_total", "counter", "Rejected rows written to the dead-letter sink."),
    ("etl_retries_total", "counter", "Retries of transient failures during the run."),
    ("etl_circuit_breaker_state", "gauge", "1 for the state each circuit breaker is in."),
    ("etl_quality_rule_passed", "gauge", "1 when a data-quality rule passed, 0 when not."),
    ("etl_quality_failed_rows", "gauge", "Rows that broke a data-quality rule."),
    ("etl_published_datasets", "gauge", "Sinks the run published."),
    ("etl_run_success", "gauge", "1 when the run succeeded, 0 when it failed."),
    ("etl_run_duration_seconds", "gauge", "Wall time of the run."),
    ("etl_run_last_timestamp_seconds", "gauge", "When the run ended (Unix time)."),
    (
        "etl_run_last_success_timestamp_seconds",
        "gauge",
        "When the run ended, sent only by successful runs (Unix time).",
    ),
    ("etl_stream_batch_id", "gauge", "Id of the latest streaming micro-batch."),
    ("etl_stream_input_rows_per_second", "gauge", "Input rate of the latest micro-batch."),
    ("etl_stream_processed_rows_per_second", "gauge", "Processing rate of the latest micro-batch."),
    ("etl_stream_batch_duration_seconds", "gauge", "Duration of the latest micro-batch."),
    ("etl_stream_state_rows", "gauge", "Rows held in streaming state after the latest batch."),
    (
        "etl_stream_dropped_by_watermark",
        "gauge",
        "Rows (for aggregations: late groups) the latest batch dropped behind the watermark.",
    ),
    ("etl_stream_lag", "gauge", "Records behind the source's latest offset after the last batch."),
    (
        "etl_stream_partition_lag",
        "gauge",
        "Records behind the latest offset of one source partition after the last batch.",
    ),
)

#: every metric name a reporter may emit
METRIC_NAMES: frozenset[str] = frozenset(name for name, _, _ in _FAMILIES)


def _samples(metrics: RunMetrics) -> Iterator[tuple[str, dict[str, str], float]]:
    pipeline = {"pipeline": metrics.pipeline}
    for stage in metrics.stages:
        labels = {**pipeline, "dataset": stage.dataset, "stage": stage.stage}
        if stage.rows_out is not None:
            yield "etl_rows_total", labels, stage.rows_out
        yield "etl_rows_rejected_total", labels, stage.rows_rejected
        yield "etl_dead_lettered_total", labels, stage.dead_lettered
        if stage.bytes is not None:
            yield "etl_bytes_total", labels, stage.bytes
        if stage.duration_s is not None:
            yield "etl_stage_duration_seconds", labels, stage.duration_s
    yield "etl_dead_letters_total", pipeline, metrics.dead_letters
    yield "etl_retries_total", pipeline, metrics.retries
    for breaker, state in sorted(metrics.breaker_states.items()):
        yield "etl_circuit_breaker_state", {**pipeline, "breaker": breaker, "state": state}, 1
    for rule in metrics.quality:
        labels = {**pipeline, "rule": rule.rule, "severity": rule.severity}
        yield "etl_quality_rule_passed", labels, int(rule.passed)
        if rule.failed_rows is not None:
            yield "etl_quality_failed_rows", labels, rule.failed_rows
    yield "etl_published_datasets", pipeline, len(metrics.published)
    if metrics.status != "running":
        yield "etl_run_success", pipeline, int(metrics.status == "succeeded")
    if metrics.finished_at is not None:
        yield "etl_run_duration_seconds", pipeline, metrics.duration_s or 0.0
        ended = metrics.finished_at.timestamp()
        yield "etl_run_last_timestamp_seconds", pipeline, ended
        if metrics.status == "succeeded":
            yield "etl_run_last_success_timestamp_seconds", pipeline, ended
    if metrics.streaming:
        latest = metrics.streaming[-1]
        yield "etl_stream_batch_id", pipeline, latest.batch_id
        for name, value in (
            ("etl_stream_input_rows_per_second", latest.input_rows_per_second),
            ("etl_stream_processed_rows_per_second", latest.processed_rows_per_second),
            ("etl_stream_batch_duration_seconds", latest.batch_duration_s),
            ("etl_stream_state_rows", latest.state_rows),
            ("etl_stream_dropped_by_watermark", latest.dropped_by_watermark),
            ("etl_stream_lag", latest.lag),
        ):
            if value is not None:
                yield name, pipeline, value
        for partition, lag in sorted(latest.lag_by_partition.items()):
            yield "etl_stream_partition_lag", {**pipeline, "partition": partition}, lag


def metric_families(metrics: RunMetrics) -> list[MetricFamily]:
    """The run's metrics as families; families without a sample are left out."""
    found: dict[str, list[MetricSample]] = {}
    for name, labels, value in _samples(metrics):
        found.setdefault(name, []).append(MetricSample(labels, float(value)))
    return [
        MetricFamily(name, kind, text, tuple(found[name]))
        for name, kind, text in _FAMILIES
        if name in found
    ]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render_text(families: list[MetricFamily]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for family in families:
        lines += [f"# HELP {family.name} {family.help}", f"# TYPE {family.name} {family.type}"]
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            lines.append(f"{family.name}{{{labels}}} {_number(sample.value)}")
    return "\n".join(lines) + "\n"
