"""Steps 1-3 of the run's commit protocol (DESIGN §4) on a :class:`LiveRun`: stage every sink
and the dead letters, check the quality verdicts and the error budget, publish (dead letters,
sinks in order, bookmarks), or discard every staging."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import DEAD_LETTER_DDL, Loader, Rejected, Staged, StageMetrics
from etl_core.config.bind import describe_target, sink_target
from etl_core.config.model import Bound, SinkSpec
from etl_core.errors import (
    EtlError,
    LoadError,
    RunFailed,
    ValidationFailed,
    short_error,
    task_error,
)
from etl_core.run import faults
from etl_core.run.live import Staging, observed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from etl_core.run.live import LiveRun

log = logging.getLogger("etl.run")


def check(live: LiveRun, failures: list[str]) -> None:
    """Step 2 of the commit protocol: the quality gate's ``failures`` (judged from the numbers
    staging observed), the dead letters' accounting and the error budget."""
    _count_dead_letters(live)
    _check_budget(live)
    if failures:
        raise ValidationFailed(
            "data quality checks failed, nothing was published:\n"
            + "\n".join(f"  - {f}" for f in failures)
        )


def _count_dead_letters(live: LiveRun) -> None:
    """rows in = rows passed + rows dead-lettered, for the stages that route rows (extract,
    transform) from the counts their staging observed; ``validate`` counts its own."""
    routed: dict[tuple[str, str], int] = {}
    for stage, dataset, observation in live.routed:
        rows = (observed(observation) or {}).get("rows") or 0
        routed[dataset, stage] = routed.get((dataset, stage), 0) + rows
    for (dataset, stage), rows in routed.items():
        metrics = live.metrics.stage(dataset, stage)
        if metrics is None or stage == "validate":
            continue
        metrics.rows_rejected = metrics.dead_lettered = rows
        if metrics.rows_out is not None:
            metrics.rows_in = metrics.rows_out + rows


def _check_budget(live: LiveRun) -> None:
    """The error budget (DESIGN §7): ``max_bad_rows`` bounds every row the run
    dead-lettered, ``max_bad_ratio`` each rejecting stage's share of the rows entering it."""
    errors = live.spec.errors
    rejecting = [m for m in live.metrics.stages if m.dead_lettered]
    problems = []
    if errors.max_bad_rows is None and errors.max_bad_ratio is None and not live.micro_batch:
        # no budget: a source that yields no good row while dead-lettering some fails the
        # run (an overwrite must never replace the data with nothing because every input row
        # was unreadable; a stream's batches only append)
        problems += [
            f"sources.{m.dataset}: every record ({m.dead_lettered}) went to the dead letters, "
            "no row was read; check its path, format and read_schema (to publish such a run "
            "anyway, set errors.max_bad_ratio: 1)"
            for m in rejecting
            if m.stage == "extract" and m.rows_out == 0 and m.dataset in live.spec.sources
        ]
    total = sum(m.dead_lettered for m in rejecting)
    if errors.max_bad_rows is not None and total > errors.max_bad_rows:
        where = ", ".join(f"{m.dataset} ({m.stage}) {m.dead_lettered}" for m in rejecting)
        problems.append(
            f"{total} rows dead-lettered ({where}): more than errors.max_bad_rows = "
            f"{errors.max_bad_rows}"
        )
    ratio = errors.max_bad_ratio
    if ratio is not None:
        for m in rejecting:
            if m.rows_in and m.dead_lettered / m.rows_in > ratio:
                problems.append(
                    f"{m.dataset} ({m.stage}): {m.dead_lettered} of {m.rows_in} rows "
                    f"dead-lettered ({m.dead_lettered / m.rows_in:.2%}): more than "
                    f"errors.max_bad_ratio = {ratio}"
                )
    if problems:
        raise RunFailed(
            "the error budget is exceeded, nothing was published:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def _stage(
    live: LiveRun,
    item: Bound,
    loader: Loader,
    options: Any,
    index: int,
    df: DataFrame,
    dead_letter: bool = False,
    metrics: StageMetrics | None = None,
) -> None:
    if live.control is not None:
        live.control.check()
    block = item.block
    if isinstance(block, SinkSpec):

        def merged(inserted: int, updated: int) -> None:
            if metrics is not None:
                metrics.inserted, metrics.updated = inserted, updated

        ctx = live.context(
            item,
            sink_index=index,
            on_reject=block.on_reject,
            mode=block.mode,
            key=tuple(block.key or ()),
            report_merged=merged,
        )
    else:  # dead letters are appended, and a refused dead letter fails the run
        ctx = live.context(item, sink_index=index, mode="append")
    # Registered before the action, so a failed stage is discarded with the others.
    entry = Staging(item, loader, options, ctx, Staged(item.name, index, live.run_key), dead_letter)
    live.staged.append(entry)
    live.progress(f"staging {item.name} ({loader.name})")
    started = time.monotonic()

    def stage() -> Staged:
        try:
            return loader.stage(ctx, df, options)
        except EtlError:
            raise
        except Exception as exc:
            # A connector's typed error raised inside a task (a source's read, this sink's
            # write) reaches us as text: rebuilt with its type, so that retries can tell
            # transient failures from permanent ones; its message names the component.
            typed = task_error(exc)
            if typed is not None:
                raise typed from exc
            raise LoadError(f"{item.path}: staging failed: {short_error(exc)}") from exc

    try:  # a retry re-stages: stage() rebuilds its staging from (pipeline, run_id, sink)
        entry.handle = live.guarded(item, "stage", stage, options)
    finally:
        if metrics is not None:  # the one action that computed this sink's rows
            metrics.duration_s = time.monotonic() - started


def stage_all(live: LiveRun, only: Collection[str] | None = None) -> None:
    """Step 1: stage every sink (or the ``only`` ones), then each stage's dead letters.

    After each sink's staging action, ``etl_stage_finished`` announces its load stage and the
    extract and transform stages that action computed, unless their numbers are settled only
    in step 2 (datasets that route dead letters; ``validate`` stages)."""
    sinks = live.bound.plan.sinks
    for index, name in enumerate(sinks):
        if only is not None and name not in only:
            continue
        item = live.bound.sinks[name]
        # A sink writes every row of its input: its count is the input's, observed already
        # (another observe here would cost a codegen break over every row).
        target = describe_target(sink_target(item, live.spec.base_dir)) or None
        loads = StageMetrics(name, "load", item.component.name, target=target)
        live.metrics.stages.append(loads)
        source = live.spec.sinks[name].input
        options = live.secrets.options_for(item)
        _stage(live, item, item.component(), options, index, live.frames[source], metrics=loads)
        lineage = live.bound.plan.lineage(source)
        collect_counts(live, lineage, quiet=True)
        routing = {dataset for _, dataset, _ in live.routed}
        computed = [
            m
            for m in live.metrics.stages
            if m.dataset in lineage - routing and m.stage in ("extract", "transform")
        ]
        live.announce([*computed, loads])
    dead_letter = live.bound.dead_letter
    if not live.dead_letters or dead_letter is None:
        return
    loader: Loader = dead_letter.component()
    for offset, (stage, frames) in enumerate(sorted(live.dead_letters.items())):
        records = frames[0]
        for more in frames[1:]:
            records = records.unionByName(more)
        name = f"dead_letter.{stage}"
        options = loader.dead_letter_options(
            live.secrets.options_for(dead_letter),
            pipeline=live.spec.name,
            run_key=live.run_key,
            stage=stage,
        )
        records = live.observe(records, name, "dead_letter", loader.name)
        loads = live.metrics.stages[-1]
        sink = attrs.evolve(dead_letter, name=name, path=f"errors.dead_letter ({stage})")
        index = len(sinks) + offset
        _stage(live, sink, loader, options, index, records, dead_letter=True, metrics=loads)


def collect_counts(
    live: LiveRun, datasets: Collection[str] | None = None, *, quiet: bool = False
) -> None:
    """Fill the stages' row counts from what staging observed (of ``datasets`` only, when
    given: those one staging action computed). Counting the same stage again changes nothing."""
    # each dataset's last count: reported by its extractor, else observed
    final_rows: dict[str, int | None] = dict(live.reported)
    for metrics, observation in live.observations:
        if datasets is not None and metrics.dataset not in datasets:
            continue
        if id(metrics) not in live.counted_stages:  # an observation is read once
            live.counted_stages.add(id(metrics))
            metrics.rows_out = (observed(observation) or {}).get("rows")
            if metrics.stage == "dead_letter":
                live.metrics.dead_letters += metrics.rows_out or 0
                metrics.stage = "load"
        if metrics.stage != "load":
            final_rows[metrics.dataset] = metrics.rows_out
    for metrics in live.metrics.stages:
        sink = live.spec.sinks.get(metrics.dataset)
        if metrics.stage == "load" and sink is not None and sink.input in final_rows:
            metrics.rows_in = metrics.rows_out = final_rows[sink.input]
    if quiet:
        return
    live.progress(
        "staged: "
        + ", ".join(f"{m.dataset}={m.rows_out}" for m in live.metrics.stages if m.stage == "load")
    )


def publish_all(live: LiveRun) -> None:
    for entry in sorted(live.staged, key=lambda e: not e.dead_letter):  # dead letters first
        counted = live.metrics.stage(entry.item.name, "load")
        if entry.dead_letter and counted is not None and counted.rows_out == 0:
            entry.loader.discard(entry.ctx, entry.handle, entry.options)  # none were rejected
            live.staged.remove(entry)
            continue
        live.progress(f"publishing {entry.item.name}")
        try:
            rejected = live.guarded(  # a retry is safe: publishing twice is a no-op
                entry.item,
                "publish",
                lambda e=entry: e.loader.publish(e.ctx, e.handle, e.options),  # type: ignore[misc]
                entry.options,
            )
        except Exception as exc:
            done = ", ".join(live.metrics.published) or "none"
            raise RunFailed(
                f"{entry.item.path}: publish failed: {short_error(exc)} (already published: "
                f"{done}); rerun with --run-id {live.run_id} to publish the rest",
                published=live.metrics.published,
            ) from exc
        live.metrics.published.append(entry.item.name)
        live.staged.remove(entry)
        if not entry.dead_letter:
            faults.reach("after_sink_commit")
        if rejected:
            _publish_rejected(live, entry, list(rejected))
    if live.proposed:
        state = live.bound.state
        options = live.secrets.options_for(state)
        state.component().save(live.spec.base_dir, live.spec.name, live.proposed, options)


def _publish_rejected(live: LiveRun, entry: Staging, rejected: list[Rejected]) -> None:
    """DESIGN §4 step 5: rows a sink's publish refused (``on_reject: dead_letter``) go to
    the dead letters right after that sink published, in a small stage + publish of their
    own, and count in the report. Few rows by nature, so they come from the driver."""
    dead_letter = live.bound.dead_letter
    sink = entry.item.name
    if dead_letter is None:  # build() refuses on_reject: dead_letter without one
        raise RunFailed(f"{entry.item.path}: refused rows but no dead-letter sink")
    now = dt.datetime.now(dt.UTC)
    records = live.spark.createDataFrame(
        [
            (live.spec.name, live.run_id, "load", entry.loader.name, sink,
             [(r.rule, live.secrets.redact(r.message), "error")], now, None,
             live.secrets.redact(r.row))
            for r in rejected
        ],
        DEAD_LETTER_DDL,
    )  # fmt: skip
    loader: Loader = dead_letter.component()
    options = loader.dead_letter_options(
        live.secrets.options_for(dead_letter),
        pipeline=live.spec.name,
        run_key=live.run_key,
        stage=f"load/{sink}",  # one folder per sink: each publishes on its own
    )
    name = f"dead_letter.load.{sink}"
    item = attrs.evolve(dead_letter, name=name, path=f"errors.dead_letter (load, {sink})")
    index = len(live.bound.plan.sinks) + len(live.dead_letters) + len(live.metrics.published)
    _stage(live, item, loader, options, index, records, dead_letter=True)
    follow_up = live.staged[-1]
    live.progress(f"publishing {name} ({len(rejected)} row(s) {sink} refused)")
    try:
        loader.publish(follow_up.ctx, follow_up.handle, follow_up.options)
    except Exception as exc:
        raise RunFailed(
            f"{item.path}: publishing the {len(rejected)} row(s) {sink} refused failed: "
            f"{short_error(exc)} ({sink} itself was published)",
            published=live.metrics.published,
        ) from exc
    live.staged.remove(follow_up)
    live.metrics.published.append(name)
    count = len(rejected)
    live.metrics.dead_letters += count
    loads = live.metrics.stage(sink, "load")
    if loads is not None:
        if loads.rows_out is not None:
            loads.rows_out -= count
        loads.rows_rejected += count
        loads.dead_lettered += count
    live.metrics.stages.append(
        StageMetrics(name, "load", loader.name, rows_in=count, rows_out=count)
    )


#: how long a discard waits for cancelled tasks to stop writing into the staging
SETTLE_S = 15.0


def discard_all(live: LiveRun) -> None:
    _settle(live)
    for entry in live.staged:
        try:
            entry.loader.discard(entry.ctx, entry.handle, entry.options)
        except Exception as exc:  # noqa: BLE001 - keep discarding the others
            message = live.secrets.redact(str(exc))
            log.warning("etl: could not discard the staging of %s: %s", entry.item.name, message)
    live.staged.clear()


#: how long Spark must stay idle (no job, no running task) before a discard trusts it
QUIET_S = 0.5


def _settle(live: LiveRun) -> None:
    """After a stop request, wait (a little) for the cancelled Spark work to end: a task
    still running would write its file into a staging already removed. A cancelled job ends
    at once, its tasks only when they next look, and a task that failed (rather than was
    killed) before its stage was cancelled is run again (seen: its retry wrote a part file
    after the discard). So wait until no job is active and no task runs, for QUIET_S."""
    if live.control is None or live.control.stop_signal is None or not live.staged:
        return
    try:
        tracker = live.spark.sparkContext._jsc.sc().statusTracker()  # noqa: SLF001 - no Python API
    except Exception:  # noqa: BLE001 - no SparkContext (Spark Connect): nothing to wait for
        return
    deadline = time.monotonic() + SETTLE_S
    idle_since: float | None = None
    while time.monotonic() < deadline:
        busy = len(tracker.getActiveJobIds()) or sum(
            info.numRunningTasks() for info in tracker.getExecutorInfos()
        )
        now = time.monotonic()
        if busy:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= QUIET_S:
            return
        time.sleep(0.1)
