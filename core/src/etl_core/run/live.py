"""The state of one live run (:class:`LiveRun`): the datasets built so far, the observations
counting their rows, the routed dead letters, the stagings waiting to be published, and the
calls every step shares (component contexts, counts, retries and breakers)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import Context, Loader, RunMetrics, Staged, StageMetrics
from etl_core.config.model import Bound, BoundPipeline, PipelineSpec
from etl_core.errors import short_error
from etl_core.run import resilience
from etl_core.run.credentials import Secrets

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession

    from etl_core.health import RunControl
    from etl_core.plugins import PluginHost

log = logging.getLogger("etl.run")

Progress = Callable[[str], None]


@attrs.define(eq=False)
class Staging:
    """One staged write (a sink, or one stage's dead letters) until it is published."""

    item: Bound
    loader: Loader
    options: Any
    ctx: Context
    handle: Staged
    dead_letter: bool


@attrs.define
class LiveRun:
    """The state of one run while it is live: what the build, the commit steps and the quality
    gate share. Imports neither the gate nor replay: they receive it as an argument."""

    bound: BoundPipeline
    host: PluginHost
    spark: SparkSession
    run_id: str
    run_key: str
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
    staged: list[Staging] = attrs.field(factory=list)
    control: RunControl | None = None
    #: a stream's micro-batch ``(query id, batch id)`` and ``--start-over`` (``Context``)
    micro_batch: tuple[str, int] | None = None
    start_over: bool = False
    #: rows each (stage, dataset) dead-lettered, observed in the dead letters' staging action
    routed: list[tuple[str, str, Observation]] = attrs.field(factory=list)
    #: the stages already passed to ``etl_stage_finished``, and those whose count was read
    announced: set[int] = attrs.field(factory=set)
    counted_stages: set[int] = attrs.field(factory=set)
    #: a stream inspected before its query starts: what the query hands to each micro-batch
    stream_rows: DataFrame | None = None

    @property
    def spec(self) -> PipelineSpec:
        return self.bound.spec

    def context(self, item: Bound, **extra: Any) -> Context:
        return Context(
            spark=self.spark,
            pipeline=self.spec.name,
            run_id=self.run_id,
            run_key=self.run_key,
            base_dir=self.spec.base_dir,
            dataset=item.name,
            component=item.component.name,
            dead_letter=self.route_dead_letters,
            dead_letter_sink=self.bound.dead_letter is not None,
            persist=self.persist_frame,
            micro_batch=self.micro_batch,
            start_over=self.start_over,
            **extra,
        )

    def announce(self, stages: Iterable[StageMetrics]) -> None:
        """``etl_stage_finished`` for each of ``stages`` not announced yet."""
        for stage in stages:
            if id(stage) not in self.announced:
                self.announced.add(id(stage))
                self.host.stage_finished(pipeline=self.spec.name, run_id=self.run_id, stage=stage)

    def persist_frame(self, df: DataFrame) -> DataFrame:
        if df.isStreaming:  # a stream's plans, inspected before its query starts
            return df
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
        if records.isStreaming:  # a stream's plans, inspected: never written, never counted
            self.dead_letters.setdefault(stage, []).append(records)
            return
        from pyspark.sql import Observation

        observation = Observation(f"etl_{self.run_key}_d{len(self.routed)}")
        records = records.observe(observation, F.count(F.lit(1)).alias("rows"))
        self.routed.append((stage, dataset, observation))
        self.dead_letters.setdefault(stage, []).append(records)

    def observe(self, df: DataFrame, dataset: str, stage: str, component: str) -> DataFrame:
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        metrics = StageMetrics(dataset=dataset, stage=stage, component=component)
        self.metrics.stages.append(metrics)
        observation = Observation(f"etl_{self.run_key}_{len(self.observations)}")
        self.observations.append((metrics, observation))
        return df.observe(observation, F.count(F.lit(1)).alias("rows"))

    def counted(self, name: str) -> bool:
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

    def persist(self, name: str) -> None:
        """Compute ``name`` once for all its writes. Spark matches cached plans when a job
        runs, so frames already derived from it use the cache too."""
        df = self.frames.get(name)
        if df is None:  # not computed: a replay feeds the transform reading it
            return
        if not any(df is done for done in self.persisted):
            self.persisted.append(df.persist())

    def guarded(self, item: Bound, what: str, call: Callable[[], Any], options: Any) -> Any:
        """``call`` (one connector call of ``item``) with the block's retry policy and circuit
        breaker: its own ``retry``/``circuit_breaker`` over the ``errors:`` defaults."""

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


def observed(observation: Observation, wait_s: float = 5.0) -> dict[str, Any] | None:
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
