"""Streaming pipelines (DESIGN §9): one streaming query per pipeline, through ``foreachBatch``.

The streamed source's extractor gives a streaming DataFrame (``extract_stream``); Spark cuts
it into micro-batches and keeps the offsets in the checkpoint. Each micro-batch is one run of
the batch commit protocol (stage → check → publish, dead letters, quality rules, counts) with
the batch's rows fed in as the source's dataset (:class:`StreamFeed`), under the run id
``<pipeline>-<query id>-<batch id>``. A batch that Spark runs again after a crash (it
published, but the checkpoint did not record it) has the same run id, so the run's own
ledgers skip what it published (its completion marker, the sinks' ledger rows and manifests).

A stop request (SIGTERM, SIGINT) lets the running batch finish and publish, then stops the
query: the next start resumes from the checkpoint.

Event time (:mod:`etl_core.config.streams`): stateful transforms (windows, deduplication,
aggregates) run inside the query, on the rows their extractor's ``micro_batch`` keeps, with
their state in the checkpoint. The query then hands each batch its *branches* as one
DataFrame: the streamed source's rows (for the counts, the dead letters, the late rows and
the datasets computed per batch) and the output of each stateful transform the batch reads,
each packed in a struct column of its own. Each branch reads the source: a stateful stream
reads each micro-batch once per branch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_core.api import Context, MicroBatchMetrics, RunMetrics
from etl_core.config import streams
from etl_core.config.model import Bound, BoundPipeline, WatermarkSpec
from etl_core.config.schema import schema_ddl
from etl_core.datasources import dead_letter_errors, row_json
from etl_core.errors import (
    ConfigError,
    ConfigIssue,
    RunFailed,
    TransientError,
    short_error,
    task_error,
)
from etl_core.run import faults
from etl_core.run.locks import run_key, runs_folder

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from etl_core.health import RunControl
    from etl_core.run.credentials import Secrets
    from etl_core.run.live import LiveRun

log = logging.getLogger("etl.run")

#: credentials ending sooner than this (or than two of the slowest batches and a trigger
#: interval) are resolved again before a micro-batch
RENEW_AHEAD_S = 60.0
#: how long a micro-batch that failed on something that passes (a server down) is run again
BATCH_RETRY_FOR_S = 600.0

#: the state store of stateful streams, unless ``engine.conf`` names another: RocksDB keeps
#: state off the JVM heap (Spark writes the choice into the checkpoint)
STATE_STORE = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
STATE_STORE_KEY = "spark.sql.streaming.stateStore.providerClass"

#: runs one micro-batch: (its rows, its run id, its (query id, batch id), its metrics) → the
#: run's metrics
RunBatch = Callable[["DataFrame", str, tuple[str, int], MicroBatchMetrics], RunMetrics]


def checkpoint_of(bound: BoundPipeline) -> Path:
    spec = bound.spec
    folder = Path(spec.checkpoint) if spec.checkpoint else Path(".etl/checkpoints") / spec.name
    return folder if folder.is_absolute() else spec.base_dir / folder


def streamed_source(bound: BoundPipeline) -> Bound:
    return next(item for item in bound.sources.values() if not item.block.static)  # type: ignore[union-attr]


#: what a Spark plan node does that, in a stream, would apply to each micro-batch on its own
PER_BATCH_ONLY = {
    "Aggregate": "groups rows",
    "Deduplicate": "removes duplicates",
    "Sort": "sorts rows",
    "GlobalLimit": "keeps the first rows",
    "LocalLimit": "keeps the first rows",
    "Window": "computes a window function",
}


def branches(bound: BoundPipeline) -> list[str]:
    """What each micro-batch of a stateful stream gets from the query: the streamed source's
    rows, then each stateful transform whose output the batch reads (stateful transforms
    never read one another: ``etl validate`` refuses it). Empty for a stream without stateful
    transforms: its batches get the source's rows as they are."""
    spec, plan = bound.spec, bound.plan
    stateful = streams.stateful(spec, bound.transforms)
    if not stateful:
        return []
    source = streamed_source(bound).name
    return [source, *(n for n in plan.order if n in stateful and plan.consumers(n))]


def query_rows(bound: BoundPipeline, raw: DataFrame, frames: dict[str, DataFrame]) -> DataFrame:
    """The streaming DataFrame the query hands to ``foreachBatch``: the source's ``raw`` rows,
    or for a stateful stream its :func:`branches` packed into one (``frames``: the datasets
    built on the stream, the stateful ones running in the query)."""
    from pyspark.sql import functions as F

    names = branches(bound)
    packed = raw if not names else None
    for i, name in enumerate(names):
        df = raw if i == 0 else frames[name]
        one = df.select(F.struct(*[F.col(f"`{c}`") for c in df.columns]).alias(f"_etl_branch_{i}"))
        packed = one if packed is None else packed.unionByName(one, allowMissingColumns=True)
    assert packed is not None
    return packed


def branch(rows: DataFrame, names: list[str], name: str) -> DataFrame:
    """One branch of a stateful stream's micro-batch (see :func:`query_rows`)."""
    from pyspark.sql import functions as F

    column = f"_etl_branch_{names.index(name)}"
    return rows.where(F.col(column).isNotNull()).select(f"{column}.*")


def with_watermark(df: DataFrame, watermark: WatermarkSpec, path: str) -> DataFrame:
    """``df`` with Spark's watermark on ``watermark.column``, which must be a timestamp."""
    from pyspark.sql.types import TimestampNTZType, TimestampType

    found = {f.name: f.dataType for f in df.schema.fields}
    kind = found.get(watermark.column)
    if kind is None:
        raise ConfigError.at(
            f"{path}.column",
            f"no column {watermark.column!r} (columns: {', '.join(found)})",
            "name the column that holds each row's event time",
        )
    if not isinstance(kind, TimestampType | TimestampNTZType):
        raise ConfigError.at(
            f"{path}.column",
            f"{watermark.column!r} is a {kind.simpleString()}, not a timestamp: event time must "
            "be a timestamp",
            "declare it TIMESTAMP in `read_schema`, or make one with a `select` "
            "(`cast: {column: timestamp}`) and put the watermark on that transform",
        )
    delay = f"{round(_seconds(watermark.delay) * 1000)} milliseconds"
    return df.withWatermark(watermark.column, delay)


def late_watermark(checkpoint: Path, batch_id: int) -> int:
    """The watermark (ms since the epoch) by which Spark's stateful operators take a batch's
    rows as late: the one the batch before ran under (Spark ≥ 3.4: late rows by the previous
    batch's watermark, state evicted by the batch's own), as its offset log entry says."""
    return int(offset_metadata(checkpoint, batch_id - 1).get("batchWatermarkMs", 0))


def offset_metadata(checkpoint: Path, batch_id: int | None = None) -> dict[str, Any]:
    """What Spark's offset log records for a batch (the latest one when ``batch_id`` is
    ``None``): the watermark it ran under, the settings the query keeps (``conf``); empty
    when there is no such entry. Line 1 is the log's version, line 2 this metadata."""
    offsets = checkpoint / "offsets"
    if batch_id is None:
        logs = (
            [int(f.name) for f in offsets.iterdir() if f.name.isdigit()] if offsets.is_dir() else []
        )
        batch_id = max(logs, default=-1)
    entry = offsets / str(batch_id)
    lines = entry.read_text().splitlines() if batch_id >= 0 and entry.exists() else []
    return json.loads(lines[1]) if len(lines) > 1 else {}


def stream_problems(bound: BoundPipeline, frames: dict[str, DataFrame]) -> list[ConfigIssue]:
    """The transforms whose Spark plan, on the stream's rows, would work on a whole dataset
    (an aggregate, a deduplication, a sort, a limit or a window function inside an ``sql`` or
    ``python`` transform): each micro-batch would get its own result, so they are refused.
    Stateful transforms run in the query, and what a micro-batch computes from their output
    is looked at above them only. Needs the plans Spark analyzed: ``frames`` built with the
    streamed source as a streaming DataFrame (``etl explain``, and the stream before it
    starts)."""
    issues: list[ConfigIssue] = []
    refused: set[str] = set()
    needed = set(bound.plan.needed())  # a dataset that feeds no sink is never computed
    inside = streams.in_query(bound.spec, bound.transforms)
    above = [analyzed_plan(frames[n]) for n in branches(bound)[1:] if n in frames]
    for name in bound.plan.order:
        item, df = bound.transforms.get(name), frames.get(name)
        if name not in needed or name in inside:
            continue
        if item is None or df is None or not df.isStreaming:
            continue
        if refused & set(bound.plan.nodes[name].inputs):
            refused.add(name)  # its input was refused already: one problem, one message
            continue
        found = _per_batch_only(df, [p for p in above if p is not None])
        if found is not None:
            refused.add(name)
            issues.append(
                ConfigIssue(
                    item.path,
                    f"in a stream this transform {found} of each micro-batch on its own, not "
                    "of the whole stream (as Spark's analyzed plan shows)",
                    "keep a stream's transforms row by row (filter, select, a join with a "
                    "`static: true` source), and group in a batch pipeline that reads the "
                    "sink's output",
                )
            )
    return issues


def analyzed_plan(df: DataFrame) -> Any:
    """The JVM's analyzed logical plan of ``df``, or ``None`` under Spark Connect (no JVM)."""
    try:
        return df._jdf.queryExecution().analyzed()  # noqa: SLF001 - no public API for it
    except AttributeError:
        return None


def _per_batch_only(df: DataFrame, stateful: list[Any]) -> str | None:
    """What the first streaming node of the plan that needs a whole dataset does, if any,
    below none of the ``stateful`` transforms' plans (they run in the query).
    (Classic Spark only: the analyzed plan is the JVM's; under Spark Connect, None.)"""
    plan = analyzed_plan(df)
    nodes = [plan] if plan is not None else []
    while nodes:
        node = nodes.pop()
        if not node.isStreaming() or any(node.equals(done) for done in stateful):
            continue
        found = PER_BATCH_ONLY.get(node.getClass().getSimpleName())
        if found is not None:
            return found
        children = node.children()
        nodes.extend(children.apply(i) for i in range(children.size()))
    return None


def stream_rows(bound: BoundPipeline, metrics: RunMetrics) -> int:
    """The rows a micro-batch's run read from the streamed source (not its static lookups)."""
    stage = metrics.stage(streamed_source(bound).name, "extract")
    return (stage.rows_out or 0) if stage is not None else 0


class StreamFeed:
    """One micro-batch's rows as the streamed source's dataset (a ``build.Feed``); the source's
    extractor finishes them (``Extractor.micro_batch``: e.g. unreadable records to the dead
    letters), every other dataset is computed as in a batch run, every sink is staged.

    In a stateful stream (``branches``), the batch's rows are the query's branches: the
    source's rows, and the output of the stateful transforms, fed in as those datasets; the
    rows a stateful transform took as late go to the dead letters under ``late:
    dead_letter``, from its input computed on the batch."""

    transforms: set[str] = set()
    sinks = None

    def __init__(
        self,
        bound: BoundPipeline,
        rows: DataFrame,
        micro_batch: MicroBatchMetrics,
        position: tuple[str, int] | None = None,
        start_over: bool = False,
        branches: list[str] | None = None,
    ):
        self.bound, self.rows = bound, rows
        #: the batch's own metrics, in its run's report (its reporters see the batch id, and
        #: the run fills the duration and processing rate)
        self.micro_batch = micro_batch
        #: (query id, batch id) and ``--start-over``, for the sinks (``Context.micro_batch``)
        self.position, self.start_over = position, start_over
        self.source = streamed_source(bound)
        self.branches = branches or []
        self.datasets = set(self.branches) or {self.source.name}
        self.persisted = False

    def needed(self) -> list[str]:
        """What the batch computes: what its sinks read, down to the fed datasets; the
        source (for its counts and dead letters); the inputs whose late rows are routed."""
        plan = self.bound.plan
        if not self.branches:
            return plan.needed()
        todo = [self.source.name, *(i for s in plan.sinks for i in plan.nodes[s].inputs)]
        todo += [i for name in self.branches[1:] if self._late(name) for i in self._inputs(name)]
        wanted: set[str] = set()
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo += [] if name in self.datasets else list(plan.nodes[name].inputs)
        return [name for name in plan.order if name in wanted]

    def dataset(self, live: LiveRun, item: Bound, options: Any) -> tuple[Bound, str, DataFrame]:
        rows = self.rows
        if self.branches:
            if not self.persisted:  # the query's stateful work runs once, whatever reads it
                rows = self.rows = live.persist_frame(rows)
                self.persisted = True
            rows = branch(rows, self.branches, item.name)
        if item.name != self.source.name:
            self._route_late(live, item)
            return item, "transform", rows
        block = item.block
        ctx = live.context(item, read_schema=schema_ddl(block.read_schema))  # type: ignore[union-attr]
        return item, "extract", item.component().micro_batch(ctx, options, rows)

    def _inputs(self, name: str) -> list[str]:
        return streams.streamed_inputs(self.bound.spec, name)

    def _late(self, name: str) -> WatermarkSpec | None:
        """The watermark of stateful transform ``name``'s input when it sends late rows to
        the dead letters."""
        found = streams.watermark_of(self.bound.spec, self._inputs(name)[0])
        return found[1] if found is not None and found[1].late == "dead_letter" else None

    def _route_late(self, live: LiveRun, item: Bound) -> None:
        """The rows of this batch that the stateful transform ``item`` dropped as late, from
        its input computed on the batch, to the dead letters (``late: dead_letter``)."""
        import datetime as dt

        from pyspark.sql import functions as F

        watermark = self._late(item.name)
        if watermark is None or self.position is None:
            return
        millis = late_watermark(checkpoint_of(self.bound), self.position[1])
        late = item.component().late(
            item.options, watermark.column, F.timestamp_millis(F.lit(millis))
        )
        if late is None:
            return
        rows = live.frames[self._inputs(item.name)[0]]
        at = dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat().replace("+00:00", "Z")
        message = (
            f"late: its {watermark.column} was behind the watermark ({at}) by which "
            f"{item.name!r} took this batch's rows"
        )
        records = rows.where(late).select(
            dead_letter_errors("late", message),
            row_json(*[F.col(f"`{c}`") for c in rows.columns]).alias("row"),
        )
        live.route_dead_letters("transform", item.name, item.component.name, records)

    def inputs(self, live: LiveRun, name: str) -> dict[str, DataFrame]:
        raise AssertionError("a stream feeds no transform")


def run_stream(
    bound: BoundPipeline,
    spark: SparkSession,
    secrets: Secrets,
    run_batch: RunBatch,
    rows: Callable[[], DataFrame],
    *,
    control: RunControl | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> RunMetrics:
    """Start the pipeline's streaming query and run it until it ends (``available_now``), a
    stop is requested through ``control``, or a batch fails (raised as it was). ``secrets``
    are the stream's credentials, shared by its batches; ``rows`` makes the streaming
    DataFrame the query hands to its batches (:func:`query_rows`), with the credentials of
    the moment. Returns the query's metrics: one :class:`MicroBatchMetrics` per batch, the
    stages summed over the batches.

    Before each batch, credentials that end soon are resolved again (:meth:`Secrets.refresh`).
    The sinks and lookups take the new ones in that batch; the streamed source's reader got
    its options when the query started, so when its own credentials are renewed the query
    stops after the batch and starts again from its checkpoint (same query id)."""
    source = streamed_source(bound)
    totals = RunMetrics(pipeline=bound.spec.name, run_id="stream", run_key="")
    if control is not None:
        control.metrics = totals
        control.finish_running = True
    batch = _Batches(bound, secrets, run_batch, totals, say)
    while True:
        _run_query(bound, spark, rows(), batch, control)
        if not batch.restart or (control is not None and control.stop_signal is not None):
            break
        say(f"sources.{source.name}: its credentials were renewed; the query starts again")
        batch.restart = batch.stopping = batch.closed = False
    totals.status = "stopped" if batch.stopping else "succeeded"
    return totals


def _run_query(
    bound: BoundPipeline,
    spark: SparkSession,
    rows: DataFrame,
    batch: _Batches,
    control: RunControl | None,
) -> None:
    """One start of the streaming query, until it ends or stops."""
    spec, source = bound.spec, streamed_source(bound)
    writer = rows.writeStream.foreachBatch(batch).outputMode(spec.output_mode or "append")
    writer = writer.option("checkpointLocation", str(batch.checkpoint))
    trigger = spec.trigger
    if trigger is not None and trigger.available_now:
        writer = writer.trigger(availableNow=True)
    elif trigger is not None and trigger.processing_time is not None:
        writer = writer.trigger(processingTime=f"{_seconds(trigger.processing_time)} seconds")
    batch.say(f"streaming {source.name} (checkpoint {batch.checkpoint})")
    query = _start(writer, spark, spec.engine.conf, batch.checkpoint)
    batch.totals.run_id = f"stream {query.id}"  # the query id: the checkpoint's, across restarts
    watcher = threading.Thread(
        target=_watch, args=(query, batch, control), name="etl-stream-watch", daemon=True
    )
    watcher.start()
    try:
        query.awaitTermination()
    except Exception as exc:  # noqa: BLE001 - Spark's StreamingQueryException, typed here
        if batch.failure is not None:
            raise batch.failure from None
        if not batch.stopping:  # the source failed, between batches
            raise RunFailed(f"sources.{source.name}: the stream stopped: {_cause(exc)}") from None
    finally:
        batch.closed = True
        watcher.join()
        _progress(query, batch)
    if batch.failure is not None:
        raise batch.failure


def _start(writer: Any, spark: SparkSession, engine_conf: dict[str, str], checkpoint: Path) -> Any:
    """Start the query with the session's settings, but two defaults unless ``engine.conf``
    sets them: ``spark.sql.shuffle.partitions`` at the session's parallelism (adaptive
    execution, which coalesces the 200 default shuffle partitions of a batch run, is off in a
    stream's micro-batches, so a join or a union there would run 200 tiny tasks a batch), and
    the RocksDB state store (:data:`STATE_STORE`). The query keeps them (it copies the
    session's settings when it starts; Spark writes both into the checkpoint and keeps the
    checkpoint's afterwards); the session gets its own values back."""
    from etl_core import datasources

    _check_state_store(engine_conf, checkpoint)
    defaults = {
        "spark.sql.shuffle.partitions": str(datasources.parallelism(spark)),
        STATE_STORE_KEY: STATE_STORE,
    }
    before = {key: spark.conf.get(key, None) for key in defaults if key not in engine_conf}
    for key in before:
        spark.conf.set(key, defaults[key])
    try:
        return writer.start()
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _check_state_store(engine_conf: dict[str, str], checkpoint: Path) -> None:
    """A state store named in ``engine.conf`` must be the one the checkpoint was started with:
    Spark would keep the checkpoint's and say nothing."""
    chosen = engine_conf.get(STATE_STORE_KEY)
    if chosen is None:
        return
    started = offset_metadata(checkpoint).get("conf", {}).get(STATE_STORE_KEY)
    if started is not None and started != chosen:
        raise ConfigError.at(
            f"engine.conf.{STATE_STORE_KEY}",
            f"the checkpoint {checkpoint} keeps its state in {started.rsplit('.', 1)[-1]}, "
            f"chosen when it started; it cannot change to {chosen.rsplit('.', 1)[-1]}",
            "remove the setting (or set it back), or start a new checkpoint (`checkpoint:`) to "
            "rebuild the state from the stream",
        )


def open_stream(bound: BoundPipeline, spark: SparkSession, options: Any) -> DataFrame:
    """The streamed source's streaming DataFrame (its extractor's ``extract_stream``), with
    its ``watermark``."""
    source = streamed_source(bound)
    ctx = Context(
        spark=spark,
        pipeline=bound.spec.name,
        run_id="stream",
        run_key="",
        base_dir=bound.spec.base_dir,
        dataset=source.name,
        component=source.component.name,
        read_schema=schema_ddl(source.block.read_schema),  # type: ignore[union-attr]
        dead_letter_sink=bound.dead_letter is not None,
    )
    rows = source.component().extract_stream(ctx, options)
    watermark = source.block.watermark  # type: ignore[union-attr]
    if watermark is None:
        return rows
    return with_watermark(rows, watermark, f"{source.path}.watermark")


def _cause(exc: BaseException) -> str:
    """What stopped the query: the typed error a Python source raised (Spark wraps it in a
    Java stack trace), else Spark's first line."""
    typed = task_error(exc)
    return str(typed) if typed is not None else short_error(exc).strip().splitlines()[0]


def _seconds(value: str | float) -> float:
    from etl_core.options import parse_duration

    return parse_duration(value)


class _Batches:
    """The ``foreachBatch`` function: one run per micro-batch, one at a time."""

    def __init__(
        self,
        bound: BoundPipeline,
        secrets: Secrets,
        run_batch: RunBatch,
        totals: RunMetrics,
        say: Callable[[str], None],
    ):
        self.bound, self.secrets, self.run_batch = bound, secrets, run_batch
        self.checkpoint = checkpoint_of(bound)
        self.totals, self.say = totals, say
        self.lock = threading.Lock()
        self.failure: BaseException | None = None
        self.closed = False
        self.stopping = False
        #: the streamed source's credentials were renewed: stop after this batch, start again
        self.restart = False
        self.slowest = 0.0  # seconds, the longest batch so far
        #: how many times a batch reads the source (once per branch of a stateful stream)
        self.scans = max(1, len(branches(bound)))

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        if self.stopping:  # not committed by Spark: the next start runs it
            raise _Stopping(f"batch {batch_id} not started: a stop was requested")
        with self.lock:
            self._renew_credentials()
            query_id = json.loads((self.checkpoint / "metadata").read_text())["id"]
            run_id = f"{self.bound.spec.name}-{query_id}-{batch_id}"
            micro_batch = MicroBatchMetrics(batch_id)
            try:
                metrics = self._run_until_done(rows, run_id, (query_id, batch_id), micro_batch)
            except _Stopping:
                raise
            except BaseException as exc:
                self.failure = exc
                raise
            faults.reach("before_spark_commit")
            self._add(metrics, micro_batch)
            self.slowest = max(self.slowest, micro_batch.batch_duration_s or 0.0)
            self.stopping = self.stopping or self.restart
            # Spark committed the batch before this one: it never runs again, and its
            # completion marker can go (a stream leaves one marker, not one per batch)
            name = self.bound.spec.name
            before = run_key(name, f"{name}-{query_id}-{batch_id - 1}")
            (runs_folder(self.bound.spec.base_dir) / f"{before}.done").unlink(missing_ok=True)

    def _run_until_done(
        self,
        rows: DataFrame,
        run_id: str,
        position: tuple[str, int],
        micro_batch: MicroBatchMetrics,
    ) -> RunMetrics:
        """The batch's run; when it fails on something that passes (a server down after the
        retries of ``errors.retry``, an open circuit breaker), the same batch runs again after
        a pause (1 s, doubling to 60 s) for up to ``BATCH_RETRY_FOR_S``: the run id is the
        same, so sinks that published it already skip it. A stop request ends the wait."""
        deadline = time.monotonic() + BATCH_RETRY_FOR_S
        pause = 1.0
        while True:
            try:
                return self.run_batch(rows, run_id, position, micro_batch)
            except Exception as exc:
                if not _passes(exc) or time.monotonic() + pause > deadline:
                    raise
                self.say(
                    f"batch {position[1]} failed, runs again in {pause:.0f}s: "
                    f"{short_error(exc).splitlines()[0]}"
                )
            until = time.monotonic() + pause
            while time.monotonic() < until:
                if self.stopping:
                    raise _Stopping(f"batch {position[1]} not run again: a stop was requested")
                time.sleep(0.1)
            pause = min(pause * 2, 60.0)

    def _renew_credentials(self) -> None:
        """Credentials that end before this batch and the next could finish are resolved again
        (at least a minute ahead); the streamed source's mean a restart after this batch."""
        trigger = self.bound.spec.trigger
        interval = _seconds(trigger.processing_time) if trigger and trigger.processing_time else 0
        within = max(RENEW_AHEAD_S, 2 * self.slowest + interval)
        renewed = self.secrets.refresh(within)
        if renewed:
            self.say(f"credentials from {', '.join(sorted(renewed))} resolved again: they end soon")
            self.restart = bool(renewed & self.secrets.providers_of(streamed_source(self.bound)))

    def _add(self, metrics: RunMetrics, micro_batch: MicroBatchMetrics) -> None:
        totals = self.totals
        totals.streaming.append(micro_batch)
        rows = stream_rows(self.bound, metrics)
        for stage in metrics.stages:
            known = totals.stage(stage.dataset, stage.stage)
            if known is None:
                totals.stages.append(stage)
                continue
            for field in ("rows_in", "rows_out", "rows_rejected", "dead_lettered"):
                mine, theirs = getattr(known, field), getattr(stage, field)
                if theirs is not None:
                    setattr(known, field, (mine or 0) + theirs)
        totals.dead_letters += metrics.dead_letters
        totals.published = sorted({*totals.published, *metrics.published})
        seconds = micro_batch.batch_duration_s or 0.0
        self.say(f"batch {micro_batch.batch_id}: {rows} rows published in {seconds:.1f}s")


def _watch(query: Any, batch: _Batches, control: RunControl | None) -> None:
    """While the query runs: its progress into the metrics, every second, and a stop (a stop
    request, or a restart for renewed source credentials) carried out between batches."""
    stopped = False
    while not batch.closed:
        _progress(query, batch)
        if control is not None and control.stop_signal is not None:
            batch.stopping = True
        if batch.stopping and not stopped:
            with batch.lock:  # the running batch finishes and publishes first
                pass
            query.stop()
            stopped = True
        time.sleep(0.2 if batch.stopping else 1.0)


def _progress(query: Any, batch: _Batches) -> None:
    """Spark's progress of each finished batch into its :class:`MicroBatchMetrics`: input and
    processing rates, the lag behind the source's latest offsets, the watermark, the state."""
    known = {m.batch_id: m for m in batch.totals.streaming}
    for progress in query.recentProgress:
        metrics = known.get(progress.batchId)
        if metrics is None or metrics.lag is not None or metrics.input_rows_per_second is not None:
            continue
        metrics.input_rows_per_second = progress.inputRowsPerSecond / batch.scans
        metrics.processed_rows_per_second = progress.processedRowsPerSecond / batch.scans
        metrics.lag_by_partition = _lag(progress.sources)
        metrics.lag = sum(metrics.lag_by_partition.values()) if metrics.lag_by_partition else None
        metrics.finished_at = progress.timestamp
        metrics.watermark = (progress.eventTime or {}).get("watermark")
        operators = progress.stateOperators
        if operators:
            metrics.state_rows = sum(op.numRowsTotal for op in operators)
            metrics.dropped_by_watermark = sum(op.numRowsDroppedByWatermark for op in operators)
        lag = "" if metrics.lag is None else f", {metrics.lag} records behind"
        late = f", {metrics.dropped_by_watermark} late" if metrics.dropped_by_watermark else ""
        batch.say(
            f"batch {progress.batchId}: {metrics.input_rows_per_second:.0f} rows/s arriving, "
            f"{metrics.processed_rows_per_second:.0f} rows/s processed{lag}{late}"
        )


def _lag(sources: Any) -> dict[str, int]:
    """Records between where the batch ended and the source's latest offsets, per partition
    (``topic[partition]``), for sources whose offsets are ``{topic: {partition: offset}}``."""
    lag: dict[str, int] = {}
    for source in sources:
        try:
            end, latest = json.loads(source.endOffset), json.loads(source.latestOffset)
        except (TypeError, ValueError):
            continue
        if not (isinstance(end, dict) and isinstance(latest, dict)):
            continue
        for topic, parts in latest.items():
            for partition, offset in parts.items() if isinstance(parts, dict) else ():
                done = end.get(topic, {}).get(partition)
                if isinstance(done, int) and isinstance(offset, int):
                    lag[f"{topic}[{partition}]"] = max(0, offset - done)
    return lag


def _passes(exc: BaseException) -> bool:
    """Whether a batch failed on something that passes: a :class:`TransientError` (after its
    retries) or an open circuit breaker, anywhere in the chain of causes."""
    from etl_core.run.resilience import CircuitOpenError

    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, TransientError | CircuitOpenError):
            return True
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return False


class _Stopping(Exception):
    """A batch that arrived after a stop request: refused, so Spark does not commit it."""
