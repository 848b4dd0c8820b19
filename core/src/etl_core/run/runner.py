"""The runner: the one place that turns a plan into Spark actions, with the run commit protocol.

1. Stage: every sink (and the dead letters) stages its rows; counts are observed in the same
   actions. 2. Check. 3. Publish: dead letters, then sinks in order, then bookmarks.
Any failure before publishing discards every staging, so nothing becomes visible.
The steps live in :mod:`~etl_core.run.build` and :mod:`~etl_core.run.commit`, the state they
share in :mod:`~etl_core.run.live`; this module orders them and owns the run's lifetime (lock,
Spark session, observers, failure handling), ``explain``, ``clean`` and ``dlq replay``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_core.api import Context, MicroBatchMetrics, RunMetrics
from etl_core.config.bind import describe_target, sink_target
from etl_core.config.model import BoundPipeline
from etl_core.errors import ConfigError, EtlError, RunFailed, short_error
from etl_core.run import commit, faults, stream
from etl_core.run.build import build, dataset
from etl_core.run.credentials import Secrets
from etl_core.run.gate import QualityGate, unknown_columns
from etl_core.run.live import LiveRun, Progress
from etl_core.run.locks import DONE_MARKER_DAYS, live_runs, run_key, run_lock, runs_folder
from etl_core.run.observers import MetricsReporters
from etl_core.run.preflight import preflight
from etl_core.run.replay import Replay, read_dead_letters, replay_run_id

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from etl_core.health import RunControl
    from etl_core.plugins import PluginHost

__all__ = [
    "build_datasets",
    "clean_stale",
    "dag_tree",
    "explain",
    "replay",
    "run",
    "run_key",
    "run_lock",
]

log = logging.getLogger("etl.run")


def clean_stale(
    bound: BoundPipeline,
    host: PluginHost,
    spark: SparkSession | None = None,
    secrets: Secrets | None = None,
) -> list[str]:
    """Ask every sink (and the dead-letter sink) to drop staging of runs that are not live,
    then forget the dead runs' lock files. Returns what was dropped."""
    spec = bound.spec
    runs = live_runs(spec.base_dir)
    own_secrets = secrets is None
    secrets = secrets or Secrets(bound, host)
    dropped: list[str] = []
    items = [*bound.sinks.values(), *([bound.dead_letter] if bound.dead_letter else [])]
    try:
        for index, item in enumerate(items):
            ctx = Context(
                spark=spark,  # type: ignore[arg-type]  # cleaning needs no session
                pipeline=spec.name,
                run_id="clean",
                run_key="",
                base_dir=spec.base_dir,
                dataset=item.name,
                component=item.component.name,
                sink_index=index,
            )
            try:
                dropped += item.component().clean_stale(ctx, secrets.options_for(item), runs)
            except Exception as exc:  # noqa: BLE001 - cleaning is best effort, never fatal
                message = secrets.redact(str(exc))
                log.warning("etl: could not clean stale staging of %s: %s", item.path, message)
    finally:
        if own_secrets:
            secrets.close()
    folder = runs_folder(spec.base_dir)
    for key in runs.dead:
        (folder / f"{key}.lock").unlink(missing_ok=True)
    for done in folder.glob("*.done"):  # completion markers answer reruns for 30 days
        if time.time() - done.stat().st_mtime > DONE_MARKER_DAYS * 86400:
            done.unlink(missing_ok=True)
    return dropped


def _load_bookmarks(live: LiveRun) -> None:
    store = live.bound.state
    options = live.secrets.options_for(store)
    live.bookmarks = store.component().load(live.spec.base_dir, live.spec.name, options)


@contextmanager
def _inspection(
    bound: BoundPipeline,
    host: PluginHost,
    spark: SparkSession | None,
    secrets: Secrets | None = None,
) -> Iterator[LiveRun]:
    """A run-shaped context that builds datasets but never stages or publishes. A stream's
    datasets are built on its streamed source's streaming DataFrame, and refused when Spark's
    plan shows a transform that needs a whole dataset (:func:`stream.stream_problems`)."""
    from etl_core.run.engine import get_spark

    spec = bound.spec
    spark = spark or get_spark(spec.engine, app_name=f"etl:{spec.name}")
    live = LiveRun(
        bound,
        host,
        spark,
        "inspect",
        run_key(spec.name, "inspect"),
        secrets or Secrets(bound, host),
        lambda message: None,
        RunMetrics(pipeline=spec.name, run_id="inspect", run_key=""),
    )
    try:
        feed = None
        if spec.execution == "streaming":
            options = live.secrets.options_for(stream.streamed_source(bound))
            rows = stream.open_stream(bound, spark, options)
            feed = stream.StreamFeed(bound, rows, MicroBatchMetrics(0))
        else:
            _load_bookmarks(live)
        for name in bound.plan.order:
            live.frames[name] = dataset(live, name, feed)[2]
        problems = stream.stream_problems(bound, live.frames) if feed is not None else []
        problems += unknown_columns(bound, live.frames)
        if problems:
            raise ConfigError(problems)
        if feed is not None:  # what the query hands to each micro-batch
            live.stream_rows = stream.query_rows(bound, feed.rows, live.frames)
        yield live
    finally:
        if secrets is None:
            live.secrets.close()


def build_datasets(
    bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None
) -> dict[str, DataFrame]:
    """Every dataset of the pipeline as a lazy DataFrame, for inspection (notebooks).
    Nothing is staged or published; analysis errors are raised as config errors."""
    with _inspection(bound, host, spark) as live:
        return live.frames


def explain(bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None) -> str:
    """The DAG as a tree, then each dataset's Spark plan (secrets redacted). A stream's
    datasets show the logical plan Spark analyzed (a streaming plan has a physical one only
    inside its running query)."""
    import contextlib
    import io

    with _inspection(bound, host, spark) as live:
        parts = [dag_tree(bound), ""]
        for name, df in live.frames.items():
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                plan = stream.analyzed_plan(df) if df.isStreaming else None
                if plan is not None:
                    print(plan.treeString())
                else:
                    df.explain(extended=False)
            parts.append(f"== {name} ==")
            if name in bound.sources:
                parts.append(source_summary(bound.sources[name], live.bookmarks.get(name)))
            parts += [buffer.getvalue().strip(), ""]
        return live.secrets.redact("\n".join(parts))


#: the options that say what a source reads and how it splits the work
READ_OPTIONS = ("table", "query", "path", "format", "topics", "pattern", "bucket", "prefix")
SPLIT_OPTIONS = ("partition_column", "partitions", "records_per_split", "max_records_per_batch")


def source_summary(item: Any, bookmark: Any) -> str:
    """What a source reads, how it splits the reading, and from where an incremental read
    starts: ``reads: table shop.orders; partition_column id, partitions 4; incremental
    {column: updated_at} after 2024-06-01 …`` (from its options, without Spark)."""

    def given(keys: tuple[str, ...]) -> str:
        found = [(k, getattr(item.options, k, None)) for k in keys]
        return ", ".join(f"{k} {' '.join(str(v).split())[:80]}" for k, v in found if v)

    parts = [f"reads: {given(READ_OPTIONS) or item.component.name}"]
    if given(SPLIT_OPTIONS):
        parts.append(given(SPLIT_OPTIONS))
    incremental = item.block.incremental
    if incremental is not None:
        since = (
            "from the start (no bookmark yet)" if bookmark is None else f"after {bookmark!s:.120}"
        )
        parts.append(f"incremental {incremental} {since}")
    return "; ".join(parts)


def dag_tree(bound: BoundPipeline) -> str:
    """Sinks at the top, each with what it reads below it."""
    plan = bound.plan
    lines = [f"{bound.spec.name}"]

    def label(name: str) -> str:
        node = plan.nodes[name]
        item = {**bound.sources, **bound.transforms, **bound.sinks}.get(name)
        kind = item.component.name if item else "?"
        unused = "  (feeds no sink)" if name in plan.unused else ""
        target = ""
        if name in bound.sinks:
            where = describe_target(sink_target(bound.sinks[name], bound.spec.base_dir))
            target = f" → {where}" if where else ""
        return f"{name} ({node.kind}: {kind}){target}{unused}"

    def walk(name: str, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label(name)}")
        inputs = plan.nodes[name].inputs
        for i, child in enumerate(inputs):
            walk(child, prefix + ("    " if last else "│   "), i == len(inputs) - 1)

    roots = [*plan.sinks, *(n for n in plan.unused if not plan.consumers(n))]
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


def _retyped(exc: EtlError, message: str, published: list[str]) -> EtlError:
    """A copy of ``exc`` carrying ``message`` instead of its own text."""
    try:
        copy = type(exc)(message)
    except TypeError:
        return RunFailed(message, published=published)
    copy.__dict__.update({k: v for k, v in vars(exc).items() if k != "args"})
    return copy


def run(
    bound: BoundPipeline,
    host: PluginHost,
    *,
    run_id: str | None = None,
    spark: SparkSession | None = None,
    progress: Progress | None = None,
    control: RunControl | None = None,
    span_exporter: Any = None,
    feed: Replay | stream.StreamFeed | None = None,
    secrets: Secrets | None = None,
    start_over: bool = False,
) -> RunMetrics:
    """Run a bound pipeline once. Returns the metrics; raises :class:`EtlError` on failure
    (the metrics are then on the exception as ``exc.metrics``).

    ``control`` shares the live run with a health server and signal handlers (a stop request
    discards every staging). ``span_exporter`` replaces the exporter ``tracing:`` configures
    (tests pass the OpenTelemetry SDK's ``InMemorySpanExporter``). ``feed`` replaces some
    datasets with dead letters fed back in (:func:`replay`). ``secrets``: a stream's
    credentials, shared by its micro-batches (the stream closes them). ``start_over``: a
    stream's sinks accept its checkpoint although their targets took another query's batches
    (``etl run --start-over``)."""
    spec = bound.spec
    say = progress or (lambda message: log.info("etl: %s", message))
    if spec.execution == "streaming" and feed is None:
        return _run_stream(bound, host, spark, say, control, span_exporter, start_over)
    run_id = run_id or str(uuid.uuid4())
    key = run_key(spec.name, run_id)
    metrics = RunMetrics(pipeline=spec.name, run_id=run_id, run_key=key)
    micro_batch = getattr(feed, "micro_batch", None)
    if micro_batch is not None:  # a stream's micro-batch: its report carries the batch
        metrics.streaming.append(micro_batch)
    if control is not None:
        control.metrics = metrics
    own_secrets = secrets is None
    secrets = secrets or Secrets(bound, host)
    with run_lock(spec.base_dir, key) as lock:
        done = lock.with_suffix(".done")
        if done.exists():
            # Rerunning a run id that fully published must not re-extract: its sinks would all
            # be skipped by their ledgers while the bookmarks moved past unpublished rows.
            say(f"run {run_id} already completed; nothing to do")
            metrics.status = "succeeded"
            metrics.finished_at = dt.datetime.now(dt.UTC)
            return metrics
        observers = _observers(bound, secrets, run_id, key, span_exporter)
        with host.observing(*observers):
            host.run_started(pipeline=spec.name, run_id=run_id, run_key=key)
            live: LiveRun | None = None
            try:
                if spark is None:
                    spark = _start_spark(bound, secrets, say, control)
                if control is not None:
                    control.started(spark)
                for dropped in clean_stale(bound, host, spark, secrets):
                    say(f"removed stale staging {dropped}")
                live = LiveRun(bound, host, spark, run_id, key, secrets, say, metrics)
                live.control = control
                live.micro_batch = getattr(feed, "position", None)
                live.start_over = getattr(feed, "start_over", False)
                _commit(live, feed)
                done.touch()
                metrics.status = "succeeded"
            except BaseException as exc:  # noqa: BLE001 - _fail raises it again, typed
                _fail(live, metrics, secrets, exc)
            finally:
                _finish(live, metrics, host)
                if own_secrets:
                    secrets.close()
    return metrics


def _run_stream(
    bound: BoundPipeline,
    host: PluginHost,
    spark: SparkSession | None,
    say: Progress,
    control: RunControl | None,
    span_exporter: Any,
    start_over: bool,
) -> RunMetrics:
    """A streaming pipeline (:mod:`etl_core.run.stream`): each micro-batch a :func:`run` with
    the batch's rows fed in as the streamed source."""

    secrets = Secrets(bound, host)
    if spark is None:
        try:
            spark = _start_spark(bound, secrets, say, control)
        except BaseException:
            secrets.close()
            raise
    if control is not None:
        control.started(spark)

    branches = stream.branches(bound)

    def run_batch(
        rows: DataFrame, run_id: str, position: tuple[str, int], micro_batch: MicroBatchMetrics
    ) -> RunMetrics:
        feed = stream.StreamFeed(bound, rows, micro_batch, position, start_over, branches)
        # the batch's own session (the query's copy): static sources read in another session
        # would not be counted by its Observations (they wait for an action they never see)
        return run(
            bound, host, run_id=run_id, spark=rows.sparkSession, progress=say,
            span_exporter=span_exporter, feed=feed, secrets=secrets,
        )  # fmt: skip

    def query_rows() -> DataFrame:
        # built anew at each start of the query (with the credentials of the moment); what
        # only Spark's plans show is refused before the query starts
        with _inspection(bound, host, spark, secrets) as live:
            assert live.stream_rows is not None
            return live.stream_rows

    try:
        metrics = stream.run_stream(
            bound, spark, secrets, run_batch, query_rows, control=control, say=say
        )
    except ConfigError:
        raise  # paths and fixes: no secret in them
    except EtlError as exc:
        raise _retyped(exc, secrets.redact(str(exc)), []) from None
    finally:
        secrets.close()
    metrics.finished_at = dt.datetime.now(dt.UTC)
    return metrics


def _start_spark(
    bound: BoundPipeline, secrets: Secrets, say: Progress, control: RunControl | None
) -> SparkSession:
    """Preflight (credentials, connections, paths: every problem at once), then a session."""
    from etl_core.run.engine import get_spark

    took = preflight(bound, secrets)
    say(f"preflight passed in {took:.2f} s")
    if control is not None:
        control.check()
    say("starting Spark")
    keep = control.on_signal if control is not None else None
    spark = get_spark(bound.spec.engine, app_name=f"etl:{bound.spec.name}", keep_sigint=keep)
    if control is not None:
        control.check()
    return spark


def _observers(
    bound: BoundPipeline, secrets: Secrets, run_id: str, key: str, span_exporter: Any
) -> list[object]:
    """What hangs on the run's lifecycle hooks: its metrics reporters and, with ``tracing:``,
    its tracer."""
    spec = bound.spec
    observers: list[object] = [MetricsReporters(bound.metrics, secrets)]
    if spec.tracing is not None:
        from etl_core.run.tracing import start_run_trace

        observers.append(
            start_run_trace(spec.tracing, spec.name, run_id, key, exporter=span_exporter)
        )
    return observers


def _commit(live: LiveRun, feed: Replay | stream.StreamFeed | None) -> None:
    """Build, then the commit protocol: stage, check, publish; a pipeline that reads
    incrementally holds its bookmarks in the state store from load to save."""
    if not any(source.incremental for source in live.spec.sources.values()):
        return _stage_check_publish(live, feed)
    store, spec = live.bound.state, live.spec
    with store.component().hold(spec.base_dir, spec.name, live.secrets.options_for(store)):
        return _stage_check_publish(live, feed)


def _stage_check_publish(live: LiveRun, feed: Replay | stream.StreamFeed | None) -> None:
    _load_bookmarks(live)
    gate = QualityGate(live)
    build(live, gate.validate, feed)
    commit.stage_all(live, None if feed is None else feed.sinks)
    faults.reach("after_stage")
    commit.collect_counts(live)
    commit.check(live, gate.judge())
    live.announce(live.metrics.stages)  # step 2 settled every staged stage's numbers
    if live.control is not None:
        live.control.start_publishing()
    commit.publish_all(live)


def _fail(live: LiveRun | None, metrics: RunMetrics, secrets: Secrets, exc: BaseException) -> None:
    """Discard every staging, then raise ``exc`` as a typed, redacted :class:`EtlError` that
    carries the metrics (interrupts and config errors as they are)."""
    metrics.status = "failed"
    metrics.error = secrets.redact(str(exc))
    if live is not None:
        commit.discard_all(live)
    if not isinstance(exc, Exception) or isinstance(exc, ConfigError):
        raise exc
    failure: Exception = exc
    message = secrets.redact(str(exc) if isinstance(exc, EtlError) else short_error(exc))
    if not isinstance(exc, EtlError):
        failure = RunFailed(message, published=metrics.published)
    elif message != str(exc):  # same type (transient stays transient), redacted text
        failure = _retyped(exc, message, metrics.published)
    failure.metrics = metrics  # type: ignore[attr-defined]
    if failure is exc:
        raise exc
    raise failure from None


def _finish(live: LiveRun | None, metrics: RunMetrics, host: PluginHost) -> None:
    """Unpersist, then announce what is left: the stages no staging finished, the run."""
    metrics.finished_at = dt.datetime.now(dt.UTC)
    for batch in metrics.streaming:  # this run was a stream's micro-batch
        rows = stream.stream_rows(live.bound, metrics) if live is not None else 0
        batch.batch_duration_s = seconds = metrics.duration_s or 0.0
        batch.processed_rows_per_second = rows / seconds if seconds else None
    if live is not None:  # without one, no stage ever started
        for df in live.persisted:
            df.unpersist()
        live.announce(metrics.stages)
    host.run_finished(metrics=metrics)


def replay(
    bound: BoundPipeline,
    host: PluginHost,
    path: Path,
    *,
    from_stage: str | None = None,
    spark: SparkSession | None = None,
    progress: Progress | None = None,
) -> RunMetrics:
    """Feed the dead letters under ``path`` back into the pipeline as one run (see
    :mod:`etl_core.run.replay`); returns its metrics like :func:`run`."""
    from etl_core.run.engine import get_spark

    spec = bound.spec
    spark = spark or get_spark(spec.engine, app_name=f"etl:{spec.name}")
    records, keys = read_dead_letters(spark, spec.name, path, from_stage)
    with _inspection(bound, host, spark) as live:  # the datasets' schemas; no job runs
        schemas = {name: df.schema for name, df in live.frames.items()}
        for df in live.persisted:
            df.unpersist()
    return run(
        bound,
        host,
        run_id=replay_run_id(path, from_stage),
        spark=spark,
        progress=progress,
        feed=Replay(bound, records, keys, schemas),
    )
