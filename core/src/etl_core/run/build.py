"""Building a run's datasets: each extractor and transformer called once, lazily (no Spark job),
with the counts, the quality gate's flags and the persists the commit steps rely on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from etl_core.api import StageMetrics
from etl_core.config.model import Bound, BoundValidation, SourceSpec
from etl_core.config.schema import schema_ddl
from etl_core.errors import ConfigError, ConfigIssue, RunFailed, short_error

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from etl_core.run.live import LiveRun

log = logging.getLogger("etl.run")

NO_DEAD_LETTER_SINK = "add `errors: {dead_letter: {type: files, path: dlq/}}`"


class Feed(Protocol):
    """Rows fed into a run instead of reading some sources or running some transforms
    (``etl dlq replay``: :class:`etl_core.run.replay.Replay`)."""

    datasets: set[str]
    transforms: set[str]

    def needed(self) -> list[str]: ...

    def dataset(self, live: LiveRun, item: Bound, options: Any) -> tuple[Bound, str, DataFrame]: ...

    def inputs(self, live: LiveRun, name: str) -> dict[str, DataFrame]: ...


def build(
    live: LiveRun,
    validate: Callable[[DataFrame, BoundValidation], DataFrame] | None = None,
    feed: Feed | None = None,
) -> None:
    """Build every dataset that feeds a sink, lazily; analysis errors surface here.
    ``validate`` adds a ``validate:`` block's checks (the quality gate)."""
    plan = live.bound.plan
    for name in plan.unused:
        log.warning("etl: dataset %r feeds no sink and is not computed", name)
    needed = plan.needed() if feed is None else feed.needed()
    for name in needed:
        routed_before = sum(len(frames) for frames in live.dead_letters.values())
        item, stage, df = dataset(live, name, feed)
        routes = sum(len(frames) for frames in live.dead_letters.values()) > routed_before
        known = None if routes else live.reported.get(name)
        if known is None and (live.counted(name) or routes):
            df = live.observe(df, name, stage, item.component.name)
        else:  # counting costs a pass-through node that breaks Spark's code generation
            live.metrics.stages.append(
                StageMetrics(name, stage, item.component.name, rows_out=known)
            )
        if validate is not None and name in live.bound.validations:
            df = validate(df, live.bound.validations[name])
        live.frames[name] = df
        if sum(n in needed or n in plan.sinks for n in plan.consumers(name)) > 1:
            live.persist(name)
        if routes:
            # its inputs now feed two writes (its output and the dead letters)
            for input_name in plan.nodes[name].inputs:
                live.persist(input_name)
    if feed is not None:
        live.proposed.clear()  # fed rows never move the bookmarks
        for name in needed:  # a dataset that nothing of the batch reads: counted here
            readers = [c for c in plan.consumers(name) if c not in feed.datasets]
            if not any(c in needed or c in plan.sinks for c in readers):
                live.frames[name].count()
    if live.dead_letters and live.bound.dead_letter is None:
        stages = ", ".join(sorted(live.dead_letters))
        raise RunFailed(
            f"datasets route rejected rows ({stages} stage) but no dead-letter sink is "
            f"configured; {NO_DEAD_LETTER_SINK}"
        )
    rejecting = [n for n, s in live.spec.sinks.items() if s.on_reject == "dead_letter"]
    if rejecting and live.bound.dead_letter is None:
        raise RunFailed(
            f"sinks {', '.join(rejecting)} have `on_reject: dead_letter` but no dead-letter "
            f"sink is configured; {NO_DEAD_LETTER_SINK}"
        )


def dataset(live: LiveRun, name: str, feed: Feed | None = None) -> tuple[Bound, str, DataFrame]:
    """Call the source's extractor or the transform's transformer for one dataset."""
    from pyspark.errors import AnalysisException

    item = live.bound.sources.get(name) or live.bound.transforms[name]
    options = live.secrets.options_for(item)
    if feed is not None and name in feed.datasets:
        return feed.dataset(live, item, options)
    try:
        if isinstance(item.block, SourceSpec):
            return item, "extract", _extract(live, item, options)
        if feed is not None and name in feed.transforms:
            inputs = feed.inputs(live, name)
        else:
            inputs = {i: live.frames[i] for i in live.spec.transforms[name].inputs}
        transformer = item.component()
        df = live.guarded(
            item,
            "transform",
            lambda: transformer.transform(live.context(item), inputs, options),
            options,
        )
        watermark = live.spec.transforms[name].watermark
        if watermark is not None and df.isStreaming:  # the event time of its output
            from etl_core.run.stream import with_watermark

            df = with_watermark(df, watermark, f"{item.path}.watermark")
        return item, "transform", df
    except AnalysisException as exc:
        message = short_error(exc).splitlines()[0]  # the rest is the plan
        fix = (
            "check the source's path and options"
            if isinstance(item.block, SourceSpec)
            else "fix the expression or the column names"
        )
        raise ConfigError(ConfigIssue(item.path, message, fix)) from None


def _extract(live: LiveRun, item: Bound, options: Any) -> DataFrame:
    block = item.block
    assert isinstance(block, SourceSpec)
    name = item.name
    ctx = live.context(
        item,
        read_schema=schema_ddl(block.read_schema),
        incremental=block.incremental,
        bookmark=live.bookmarks.get(name),
        propose_bookmark=live.proposed.__setitem__,
        report_rows=lambda rows: live.reported.__setitem__(name, rows),
    )
    extractor = item.component()
    return live.guarded(item, "extract", lambda: extractor.extract(ctx, options), options)
