"""The runner: the one place that turns a plan into Spark actions, with the run commit protocol.

1. Stage: every sink (and the dead letters) stages its rows; counts are observed in the same
   actions. 2. Check. 3. Publish: dead letters, then sinks in order, then bookmarks.
Any failure before publishing discards every staging, so nothing becomes visible.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import (
    DEAD_LETTER_DDL,
    Context,
    LiveRuns,
    Loader,
    Rejected,
    RunMetrics,
    Staged,
    StageMetrics,
    ValidationFailed,
)
from etl_core.config import (
    Bound,
    BoundPipeline,
    ConfigError,
    SourceSpec,
)
from etl_core.errors import (
    ConfigIssue,
    EtlError,
    LoadError,
    RunFailed,
    RunLocked,
    TransientError,
    short_error,
)
from etl_core.gate import QualityGate
from etl_core.plugins import PluginHost
from etl_core.run_secrets import Secrets

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession

    from etl_core.health import RunControl
    from etl_core.replay import Replay
    from etl_core.tracing import RunTrace

log = logging.getLogger("etl.run")

Progress = Callable[[str], None]


def run_key(pipeline: str, run_id: str) -> str:
    return hashlib.sha256(f"{pipeline}\x00{run_id}".encode()).hexdigest()[:12]


@contextmanager
def run_lock(base_dir: Path, key: str) -> Iterator[Path]:
    """Hold ``.etl/runs/<run_key>.lock`` exclusively while the run is live."""
    path = base_dir / ".etl" / "runs" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLocked(
                f"run {key} is already running (lock {path}); wait for it or use another --run-id"
            ) from exc
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


DONE_MARKER_DAYS = 30


def live_runs(base_dir: Path) -> LiveRuns:
    """Which runs beside this pipeline are live (their lock is held) or known dead (their lock
    file is left but free: the process died, e.g. by SIGKILL)."""
    live, dead = set(), set()
    for path in sorted((base_dir / ".etl" / "runs").glob("*.lock")):
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(path.stem)
                continue
            dead.add(path.stem)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return LiveRuns(frozenset(live), frozenset(dead))


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
    folder = spec.base_dir / ".etl" / "runs"
    for key in runs.dead:
        (folder / f"{key}.lock").unlink(missing_ok=True)
    for done in folder.glob("*.done"):  # completion markers answer reruns for 30 days
        if time.time() - done.stat().st_mtime > DONE_MARKER_DAYS * 86400:
            done.unlink(missing_ok=True)
    return dropped


def schema_ddl(read_schema: str | list[dict[str, Any]] | None) -> str | None:
    """A ``read_schema`` as DDL: a DDL string as is, or a list of ``{name, type, nullable}``."""
    if read_schema is None or isinstance(read_schema, str):
        return read_schema
    return ", ".join(
        f"`{c['name']}` {c['type']}{'' if c.get('nullable', True) else ' NOT NULL'}"
        for c in read_schema
    )


@attrs.define(eq=False)
class _Staging:
    item: Bound
    loader: Loader
    options: Any
    ctx: Context
    handle: Staged
    dead_letter: bool


@attrs.define
class _Run:
    """The state of one run while it is live."""

    bound: BoundPipeline
    host: PluginHost
    spark: SparkSession
    run_id: str
    key: str
    secrets: Secrets
    progress: Progress
    metrics: RunMetrics
    bookmarks: dict[str, Any] = attrs.field(factory=dict)
    proposed: dict[str, Any] = attrs.field(factory=dict)
    #: rows a source's extractor reported it holds (``Context.report_rows``): not observed
    reported: dict[str, int] = attrs.field(factory=dict)
    frames: dict[str, DataFrame] = attrs.field(factory=dict)
    observations: list[tuple[StageMetrics, Observation]] = attrs.field(factory=list)
    dead_letters: dict[str, list[DataFrame]] = attrs.field(factory=dict)
    persisted: list[DataFrame] = attrs.field(factory=list)
    staged: list[_Staging] = attrs.field(factory=list)
    trace: RunTrace | None = None
    control: RunControl | None = None
    #: dead letters fed back in (``etl dlq replay``); ``None`` for a normal run
    replay: Replay | None = None
    #: rows each (stage, dataset) dead-lettered, observed in the dead letters' staging action
    routed: list[tuple[str, str, Observation]] = attrs.field(factory=list)
    #: the ``validate:`` blocks: checked while building, judged in step 2
    gate: QualityGate = attrs.field(
        init=False, repr=False, default=attrs.Factory(QualityGate, takes_self=True)
    )

    @property
    def spec(self) -> Any:
        return self.bound.spec

    def context(self, item: Bound, **extra: Any) -> Context:
        return Context(
            spark=self.spark,
            pipeline=self.spec.name,
            run_id=self.run_id,
            run_key=self.key,
            base_dir=self.spec.base_dir,
            dataset=item.name,
            component=item.component.name,
            dead_letter=self.route_dead_letters,
            dead_letter_sink=self.bound.dead_letter is not None,
            persist=self._persist_frame,
            **extra,
        )

    def _persist_frame(self, df: DataFrame) -> DataFrame:
        df = df.persist()
        self.persisted.append(df)
        return df

    def route_dead_letters(self, stage: str, dataset: str, component: str, df: DataFrame) -> None:
        from pyspark.sql import functions as F

        if "source_position" not in df.columns:
            df = df.withColumn("source_position", F.lit(None).cast("string"))
        records = df.select(
            F.lit(self.spec.name).alias("pipeline"),
            F.lit(self.run_id).alias("run_id"),
            F.lit(stage).alias("stage"),
            F.lit(component).alias("component"),
            F.lit(dataset).alias("dataset"),
            "errors",
            F.current_timestamp().alias("timestamp"),
            "source_position",
            "row",
        )
        from pyspark.sql import Observation

        observation = Observation(f"etl_{self.key}_d{len(self.routed)}")
        records = records.observe(observation, F.count(F.lit(1)).alias("rows"))
        self.routed.append((stage, dataset, observation))
        self.dead_letters.setdefault(stage, []).append(records)

    def observe(self, df: DataFrame, dataset: str, stage: str, component: str) -> DataFrame:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        metrics = StageMetrics(dataset=dataset, stage=stage, component=component)
        self.metrics.stages.append(metrics)
        observation = Observation(f"etl_{self.key}_{len(self.observations)}")
        self.observations.append((metrics, observation))
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def _counted(self, name: str) -> bool:
        """Whether the run counts a dataset's rows: sources (rows read), sinks' inputs (rows
        written) and, with ``engine.count_every_dataset``, every other one. Each count is an
        ``observe`` node that costs a break in Spark's code generation over all its rows and
        stops filters from being pushed below it."""
        plan = self.bound.plan
        return (
            self.spec.engine.count_every_dataset
            or name in self.spec.sources
            or any(c in plan.sinks for c in plan.consumers(name))
        )

    def build(self) -> None:
        """Build every dataset that feeds a sink, lazily; analysis errors surface here."""
        plan = self.bound.plan
        for name in plan.unused:
            log.warning("etl: dataset %r feeds no sink and is not computed", name)
        needed = plan.needed() if self.replay is None else self.replay.needed()
        for name in needed:
            routed_before = sum(len(frames) for frames in self.dead_letters.values())
            item, stage, df = self.dataset(name)
            routes = sum(len(frames) for frames in self.dead_letters.values()) > routed_before
            known = None if routes else self.reported.get(name)
            if known is None and (self._counted(name) or routes):
                df = self.observe(df, name, stage, item.component.name)
            else:  # counting costs a pass-through node that breaks Spark's code generation
                self.metrics.stages.append(
                    StageMetrics(name, stage, item.component.name, rows_out=known)
                )
            if name in self.bound.validations:
                df = self.gate.validate(df, self.bound.validations[name])
            self.frames[name] = df
            if sum(n in needed or n in plan.sinks for n in plan.consumers(name)) > 1:
                self._persist(name)
            if routes:
                # its inputs now feed two writes (its output and the dead letters)
                for input_name in plan.nodes[name].inputs:
                    self._persist(input_name)
        if self.replay is not None:
            self.proposed.clear()  # a replay never moves the bookmarks
        if self.dead_letters and self.bound.dead_letter is None:
            raise RunFailed(
                f"datasets route rejected rows ({', '.join(sorted(self.dead_letters))} stage) but "
                "no dead-letter sink is configured; add `errors: {dead_letter: {type: files, "
                "path: dlq/}}`"
            )
        rejecting = [n for n, s in self.spec.sinks.items() if s.on_reject == "dead_letter"]
        if rejecting and self.bound.dead_letter is None:
            raise RunFailed(
                f"sinks {', '.join(rejecting)} have `on_reject: dead_letter` but no dead-letter "
                "sink is configured; add `errors: {dead_letter: {type: files, path: dlq/}}`"
            )

    def check(self) -> None:
        """Step 2 of the commit protocol: judge every rule from the numbers staging observed."""
        failures = self.gate.judge()
        self._count_dead_letters()
        self._check_budget()
        if failures:
            raise ValidationFailed(
                "data quality checks failed, nothing was published:\n"
                + "\n".join(f"  - {f}" for f in failures)
            )

    def _count_dead_letters(self) -> None:
        """rows in = rows passed + rows dead-lettered, for the stages that route rows (extract,
        transform) from the counts their staging observed; ``validate`` counts its own."""
        routed: dict[tuple[str, str], int] = {}
        for stage, dataset, observation in self.routed:
            rows = (_observed(observation) or {}).get("rows") or 0
            routed[dataset, stage] = routed.get((dataset, stage), 0) + rows
        for (dataset, stage), rows in routed.items():
            metrics = self.metrics.stage(dataset, stage)
            if metrics is None or stage == "validate":
                continue
            metrics.rows_rejected = metrics.dead_lettered = rows
            if metrics.rows_out is not None:
                metrics.rows_in = metrics.rows_out + rows

    def _check_budget(self) -> None:
        """The error budget (DESIGN §7): ``max_bad_rows`` bounds every row the run
        dead-lettered, ``max_bad_ratio`` each rejecting stage's share of the rows entering it."""
        errors = self.spec.errors
        rejecting = [m for m in self.metrics.stages if m.dead_lettered]
        problems = []
        total = sum(m.dead_lettered for m in rejecting)
        if errors.max_bad_rows is not None and total > errors.max_bad_rows:
            where = ", ".join(f"{m.dataset} ({m.stage}) {m.dead_lettered}" for m in rejecting)
            problems.append(
                f"{total} rows dead-lettered ({where}): more than errors.max_bad_rows = "
                f"{errors.max_bad_rows}"
            )
        for m in rejecting if errors.max_bad_ratio is not None else ():
            if m.rows_in and m.dead_lettered / m.rows_in > errors.max_bad_ratio:
                problems.append(
                    f"{m.dataset} ({m.stage}): {m.dead_lettered} of {m.rows_in} rows "
                    f"dead-lettered ({m.dead_lettered / m.rows_in:.2%}): more than "
                    f"errors.max_bad_ratio = {errors.max_bad_ratio}"
                )
        if problems:
            raise RunFailed(
                "the error budget is exceeded, nothing was published:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )

    def _persist(self, name: str) -> None:
        """Compute ``name`` once for all its writes. Spark matches cached plans when a job
        runs, so frames already derived from it use the cache too."""
        df = self.frames.get(name)
        if df is None:  # not computed: a replay feeds the transform reading it
            return
        if not any(df is done for done in self.persisted):
            self.persisted.append(df.persist())

    def _guarded(self, item: Bound, what: str, call: Callable[[], Any], options: Any) -> Any:
        """``call`` (one connector call of ``item``) with the block's retry policy and circuit
        breaker: its own ``retry``/``circuit_breaker`` over the ``errors:`` defaults."""
        from etl_core import resilience

        policy, circuit = resilience.block_settings(item.block, self.spec.errors)
        if policy.attempts <= 1 and circuit is None:
            return call()
        endpoint = None
        if circuit is not None:
            endpoint = item.component().endpoint(options) or f"{self.spec.name}/{item.path}"

        def on_retry(attempt: int, attempts: int, wait_s: float, error: BaseException) -> None:
            self.metrics.retries += 1
            message = self.secrets.redact(short_error(error).splitlines()[0])
            log.warning(
                "etl: retrying %s.%s in %.3gs (attempt %d/%d): %s",
                item.path,
                what,
                wait_s,
                attempt,
                attempts,
                message,
            )

        def on_state(name: str, state: str) -> None:
            self.metrics.breaker_states[self.secrets.redact(name)] = state

        routed = {stage: len(frames) for stage, frames in self.dead_letters.items()}

        def attempt() -> Any:
            try:
                return call()
            except BaseException:  # a failed attempt's dead letters must not count twice
                for stage, frames in self.dead_letters.items():
                    del frames[routed.get(stage, 0) :]
                raise

        return resilience.guarded(
            attempt,
            name=f"{item.path}.{what}",
            retry=policy,
            endpoint=endpoint,
            circuit=circuit,
            on_retry=on_retry,
            on_state=on_state,
        )

    def dataset(self, name: str) -> tuple[Bound, str, DataFrame]:
        """Call the source's extractor or the transform's transformer for one dataset."""
        from pyspark.errors import AnalysisException

        item = self.bound.sources.get(name) or self.bound.transforms[name]
        options = self.secrets.options_for(item)
        if self.replay is not None and name in self.replay.datasets:
            return self.replay.dataset(self, item, options)
        try:
            if isinstance(item.block, SourceSpec):
                ctx = self.context(
                    item,
                    read_schema=schema_ddl(item.block.read_schema),
                    incremental=item.block.incremental,
                    bookmark=self.bookmarks.get(name),
                    propose_bookmark=self.proposed.__setitem__,
                    report_rows=lambda rows: self.reported.__setitem__(name, rows),
                )
                extractor = item.component()
                df = self._guarded(
                    item, "extract", lambda: extractor.extract(ctx, options), options
                )
                return item, "extract", df
            if self.replay is not None and name in self.replay.transforms:
                inputs = self.replay.inputs(self, name)
            else:
                inputs = {i: self.frames[i] for i in self.spec.transforms[name].inputs}
            transformer = item.component()
            df = self._guarded(
                item,
                "transform",
                lambda: transformer.transform(self.context(item), inputs, options),
                options,
            )
            return item, "transform", df
        except AnalysisException as exc:
            message = short_error(exc).splitlines()[0]  # the rest is the plan
            fix = (
                "check the source's path and options"
                if isinstance(item.block, SourceSpec)
                else "fix the expression or the column names"
            )
            raise ConfigError(ConfigIssue(item.path, message, fix)) from None

    def _stage(
        self,
        item: Bound,
        loader: Loader,
        options: Any,
        index: int,
        df: DataFrame,
        dead_letter: bool = False,
        metrics: StageMetrics | None = None,
    ) -> None:
        if self.control is not None:
            self.control.check()
        on_reject = getattr(item.block, "on_reject", "fail")  # sinks only; dead letters fail
        ctx = self.context(item, sink_index=index, on_reject=on_reject)
        # Registered before the action, so a failed stage is discarded with the others.
        entry = _Staging(
            item, loader, options, ctx, Staged(item.name, index, self.key), dead_letter
        )
        self.staged.append(entry)
        self.progress(f"staging {item.name} ({loader.name})")
        started, started_ns = time.monotonic(), time.time_ns()

        def stage() -> Staged:
            try:
                return loader.stage(ctx, df, options)
            except EtlError:
                raise
            except Exception as exc:
                message = f"{item.path}: staging failed: {short_error(exc)}"
                # A connector's typed error raised inside a task reaches us as text: keep its
                # type, so that retries can tell transient failures from permanent ones.
                kind = TransientError if "TransientError" in str(exc) else LoadError
                raise kind(message) from exc

        try:  # a retry re-stages: stage() rebuilds its staging from (pipeline, run_id, sink)
            entry.handle = self._guarded(item, "stage", stage, options)
        finally:
            if metrics is not None:  # the one action that computed this sink's rows
                metrics.duration_s = time.monotonic() - started
                if self.trace is not None:
                    self.trace.timed(metrics, started_ns, time.time_ns())

    def stage_all(self) -> None:
        sinks = self.bound.plan.sinks
        for index, name in enumerate(sinks):
            if self.replay is not None and name not in self.replay.sinks:
                continue  # a replay writes only the sinks downstream of the replayed rows
            item = self.bound.sinks[name]
            # A sink writes every row of its input: its count is the input's, observed already
            # (another observe here would cost a codegen break over every row).
            loads = StageMetrics(dataset=name, stage="load", component=item.component.name)
            self.metrics.stages.append(loads)
            df = self.frames[self.spec.sinks[name].input]
            options = self.secrets.options_for(item)
            self._stage(item, item.component(), options, index, df, metrics=loads)
        dead_letter = self.bound.dead_letter
        if not self.dead_letters or dead_letter is None:
            return
        loader: Loader = dead_letter.component()
        for offset, (stage, frames) in enumerate(sorted(self.dead_letters.items())):
            records = frames[0]
            for more in frames[1:]:
                records = records.unionByName(more)
            name = f"dead_letter.{stage}"
            options = loader.dead_letter_options(
                self.secrets.options_for(dead_letter),
                pipeline=self.spec.name,
                run_key=self.key,
                stage=stage,
            )
            records = self.observe(records, name, "dead_letter", loader.name)
            loads = self.metrics.stages[-1]
            sink = attrs.evolve(dead_letter, name=name, path=f"errors.dead_letter ({stage})")
            index = len(sinks) + offset
            self._stage(sink, loader, options, index, records, dead_letter=True, metrics=loads)

    def collect_counts(self) -> None:
        # each dataset's last count: reported by its extractor, else observed
        final_rows: dict[str, int | None] = dict(self.reported)
        for metrics, observation in self.observations:
            rows = (_observed(observation) or {}).get("rows")
            if metrics.stage == "dead_letter":
                self.metrics.dead_letters += rows or 0
                metrics.stage = "load"
                metrics.rows_out = rows
            else:
                metrics.rows_out = final_rows[metrics.dataset] = rows
        for metrics in self.metrics.stages:
            if metrics.stage == "load" and metrics.dataset in self.spec.sinks:
                rows = final_rows.get(self.spec.sinks[metrics.dataset].input)
                metrics.rows_in = metrics.rows_out = rows
        self.progress(
            "staged: "
            + ", ".join(
                f"{m.dataset}={m.rows_out}" for m in self.metrics.stages if m.stage == "load"
            )
        )

    def publish_all(self) -> None:
        for entry in sorted(self.staged, key=lambda e: not e.dead_letter):  # dead letters first
            counted = self.metrics.stage(entry.item.name, "load")
            if entry.dead_letter and counted is not None and counted.rows_out == 0:
                entry.loader.discard(entry.ctx, entry.handle, entry.options)  # none were rejected
                self.staged.remove(entry)
                continue
            self.progress(f"publishing {entry.item.name}")
            try:
                rejected = self._guarded(  # a retry is safe: publishing twice is a no-op
                    entry.item,
                    "publish",
                    lambda e=entry: e.loader.publish(e.ctx, e.handle, e.options),  # type: ignore[misc]
                    entry.options,
                )
            except Exception as exc:
                done = ", ".join(self.metrics.published) or "none"
                raise RunFailed(
                    f"{entry.item.path}: publish failed: {short_error(exc)} (already published: "
                    f"{done}); rerun with --run-id {self.run_id} to publish the rest",
                    published=self.metrics.published,
                ) from exc
            self.metrics.published.append(entry.item.name)
            self.staged.remove(entry)
            if rejected:
                self._publish_rejected(entry, list(rejected))
        if self.proposed:
            state = self.bound.state
            options = self.secrets.options_for(state)
            state.component().save(self.spec.base_dir, self.spec.name, self.proposed, options)

    def _publish_rejected(self, entry: _Staging, rejected: list[Rejected]) -> None:
        """DESIGN §4 step 5: rows a sink's publish refused (``on_reject: dead_letter``) go to
        the dead letters right after that sink published, in a small stage + publish of their
        own, and count in the report. Few rows by nature, so they come from the driver."""
        dead_letter = self.bound.dead_letter
        sink = entry.item.name
        if dead_letter is None:  # build() refuses on_reject: dead_letter without one
            raise RunFailed(f"{entry.item.path}: refused rows but no dead-letter sink")
        now = dt.datetime.now(dt.UTC)
        records = self.spark.createDataFrame(
            [
                (self.spec.name, self.run_id, "load", entry.loader.name, sink,
                 [(r.rule, self.secrets.redact(r.message), "error")], now, None,
                 self.secrets.redact(r.row))
                for r in rejected
            ],
            DEAD_LETTER_DDL,
        )  # fmt: skip
        loader: Loader = dead_letter.component()
        options = loader.dead_letter_options(
            self.secrets.options_for(dead_letter),
            pipeline=self.spec.name,
            run_key=self.key,
            stage=f"load/{sink}",  # one folder per sink: each publishes on its own
        )
        name = f"dead_letter.load.{sink}"
        item = attrs.evolve(dead_letter, name=name, path=f"errors.dead_letter (load, {sink})")
        index = len(self.bound.plan.sinks) + len(self.dead_letters) + len(self.metrics.published)
        self._stage(item, loader, options, index, records, dead_letter=True)
        follow_up = self.staged[-1]
        self.progress(f"publishing {name} ({len(rejected)} row(s) {sink} refused)")
        try:
            loader.publish(follow_up.ctx, follow_up.handle, follow_up.options)
        except Exception as exc:
            raise RunFailed(
                f"{item.path}: publishing the {len(rejected)} row(s) {sink} refused failed: "
                f"{short_error(exc)} ({sink} itself was published)",
                published=self.metrics.published,
            ) from exc
        self.staged.remove(follow_up)
        self.metrics.published.append(name)
        count = len(rejected)
        self.metrics.dead_letters += count
        loads = self.metrics.stage(sink, "load")
        if loads is not None:
            if loads.rows_out is not None:
                loads.rows_out -= count
            loads.rows_rejected += count
            loads.dead_lettered += count
        self.metrics.stages.append(
            StageMetrics(name, "load", loader.name, rows_in=count, rows_out=count)
        )

    def discard_all(self) -> None:
        for entry in self.staged:
            try:
                entry.loader.discard(entry.ctx, entry.handle, entry.options)
            except Exception as exc:  # noqa: BLE001 - keep discarding the others
                message = self.secrets.redact(str(exc))
                log.warning(
                    "etl: could not discard the staging of %s: %s", entry.item.name, message
                )
        self.staged.clear()


@contextmanager
def _inspection(
    bound: BoundPipeline, host: PluginHost, spark: SparkSession | None
) -> Iterator[_Run]:
    """A run-shaped context that builds datasets but never stages or publishes."""
    from etl_core.engine import get_spark

    spec = bound.spec
    spark = spark or get_spark(spec.engine, app_name=f"etl:{spec.name}")
    state = _Run(
        bound,
        host,
        spark,
        "inspect",
        run_key(spec.name, "inspect"),
        Secrets(bound, host),
        lambda message: None,
        RunMetrics(pipeline=spec.name, run_id="inspect", run_key=""),
    )
    store = bound.state
    options = state.secrets.options_for(store)
    state.bookmarks = store.component().load(spec.base_dir, spec.name, options)
    try:
        for name in bound.plan.order:
            state.frames[name] = state.dataset(name)[2]
        yield state
    finally:
        state.secrets.close()


def build_datasets(
    bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None
) -> dict[str, DataFrame]:
    """Every dataset of the pipeline as a lazy DataFrame, for inspection (notebooks).
    Nothing is staged or published; analysis errors are raised as config errors."""
    with _inspection(bound, host, spark) as state:
        return state.frames


def explain(bound: BoundPipeline, host: PluginHost, spark: SparkSession | None = None) -> str:
    """The DAG as a tree, then each dataset's Spark plan (secrets redacted)."""
    import contextlib
    import io

    with _inspection(bound, host, spark) as state:
        parts = [dag_tree(bound), ""]
        for name, df in state.frames.items():
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                df.explain(extended=False)
            parts += [f"== {name} ==", buffer.getvalue().strip(), ""]
        return state.secrets.redact("\n".join(parts))


def dag_tree(bound: BoundPipeline) -> str:
    """Sinks at the top, each with what it reads below it."""
    plan = bound.plan
    lines = [f"{bound.spec.name}"]

    def label(name: str) -> str:
        node = plan.nodes[name]
        item = {**bound.sources, **bound.transforms, **bound.sinks}.get(name)
        kind = item.component.name if item else "?"
        unused = "  (feeds no sink)" if name in plan.unused else ""
        return f"{name} ({node.kind}: {kind}){unused}"

    def walk(name: str, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└── ' if last else '├── '}{label(name)}")
        inputs = plan.nodes[name].inputs
        for i, child in enumerate(inputs):
            walk(child, prefix + ("    " if last else "│   "), i == len(inputs) - 1)

    roots = [*plan.sinks, *(n for n in plan.unused if not plan.consumers(n))]
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


def _observed(observation: Observation, wait_s: float = 5.0) -> dict[str, Any] | None:
    """The observed values, or ``None`` when no action computed that dataset (a transform may
    ignore one of its inputs); ``Observation.get`` alone would wait forever then."""
    future = getattr(getattr(observation, "_jo", None), "future", None)  # classic Spark only
    deadline = time.monotonic() + wait_s
    while future is not None and not future().isCompleted():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    try:
        return observation.get
    except Exception as exc:  # noqa: BLE001 - e.g. the optimizer pruned an empty input away
        log.debug("etl: no observed values for %s: %s", observation, exc)
        return None


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
    replay: Replay | None = None,
) -> RunMetrics:
    """Run a bound pipeline once. Returns the metrics; raises :class:`EtlError` on failure
    (the metrics are then on the exception as ``exc.metrics``).

    ``control`` shares the live run with a health server and signal handlers (a stop request
    discards every staging). ``span_exporter`` replaces the exporter ``tracing:`` configures
    (tests pass the OpenTelemetry SDK's ``InMemorySpanExporter``)."""
    spec = bound.spec
    run_id = run_id or str(uuid.uuid4())
    key = run_key(spec.name, run_id)
    say = progress or (lambda message: log.info("etl: %s", message))
    metrics = RunMetrics(pipeline=spec.name, run_id=run_id, run_key=key)
    if control is not None:
        control.metrics = metrics
    secrets = Secrets(bound, host)
    with run_lock(spec.base_dir, key) as lock:
        done = lock.with_suffix(".done")
        if done.exists():
            # Rerunning a run id that fully published must not re-extract: its sinks would all
            # be skipped by their ledgers while the bookmarks moved past unpublished rows.
            say(f"run {run_id} already completed; nothing to do")
            metrics.status = "succeeded"
            metrics.finished_at = dt.datetime.now(dt.UTC)
            return metrics
        host.run_started(pipeline=spec.name, run_id=run_id, run_key=key)
        state: _Run | None = None
        trace: RunTrace | None = None
        try:
            if spec.tracing is not None:
                from etl_core.tracing import start_run_trace

                trace = start_run_trace(
                    spec.tracing, spec.name, run_id, key, exporter=span_exporter
                )
            if spark is None:
                from etl_core.engine import get_spark

                say("starting Spark")
                spark = get_spark(spec.engine, app_name=f"etl:{spec.name}")
            if control is not None:
                control.started(spark)
            for dropped in clean_stale(bound, host, spark, secrets):
                say(f"removed stale staging {dropped}")
            state = _Run(bound, host, spark, run_id, key, secrets, say, metrics)
            state.trace, state.control = trace, control
            state.replay = replay
            store = bound.state
            options = secrets.options_for(store)
            state.bookmarks = store.component().load(spec.base_dir, spec.name, options)
            state.build()
            state.stage_all()
            state.collect_counts()
            state.check()
            if control is not None:
                control.start_publishing()
            state.publish_all()
            done.touch()
            metrics.status = "succeeded"
        except BaseException as exc:
            metrics.status = "failed"
            metrics.error = secrets.redact(str(exc))
            if state is not None:
                state.discard_all()
            if not isinstance(exc, Exception) or isinstance(exc, ConfigError):
                raise
            failure = exc
            message = secrets.redact(str(exc) if isinstance(exc, EtlError) else short_error(exc))
            if not isinstance(exc, EtlError):
                failure = RunFailed(message, published=metrics.published)
            elif message != str(exc):  # same type (transient stays transient), redacted text
                failure = _retyped(exc, message, metrics.published)
            failure.metrics = metrics  # type: ignore[attr-defined]
            if failure is exc:
                raise
            raise failure from None
        finally:
            metrics.finished_at = dt.datetime.now(dt.UTC)
            if state is not None:
                for df in state.persisted:
                    df.unpersist()
            _report(bound, host, metrics, secrets)
            if trace is not None:
                try:
                    trace.finish(metrics)
                except Exception as exc:  # noqa: BLE001 - tracing never fails the run
                    log.warning("etl: could not export the run's spans: %s", exc)
            secrets.close()
    return metrics


def _report(bound: BoundPipeline, host: PluginHost, metrics: RunMetrics, secrets: Secrets) -> None:
    for stage in metrics.stages:
        host.stage_finished(pipeline=metrics.pipeline, run_id=metrics.run_id, stage=stage)
    for item in bound.metrics:
        try:
            item.component().report(metrics, secrets.options_for(item))
        except Exception as exc:  # noqa: BLE001 - a reporter never fails the run
            message = secrets.redact(str(exc))
            log.warning("etl: metrics reporter %s failed: %s", item.component.name, message)
    host.run_finished(metrics=metrics)
