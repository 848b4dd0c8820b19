"""The ``window`` transform: time windows (one row per window and group) or window functions
(a new column on every row)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import Context, Transformer
from etl_core.builtins.transforms.checks import (
    aggregation_problems,
    column_list_problems,
    name_problems,
    sort_problems,
    watermark_problems,
)
from etl_core.builtins.transforms.columns import SortKey, aggregation_columns, free_name
from etl_core.options import ValueProblem, one_of, parse_duration, positive

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

#: the output columns of time and session windows
WINDOW_COLUMNS = ("window_start", "window_end")

RANKING_FUNCTIONS = ("row_number", "rank", "dense_rank")
OFFSET_FUNCTIONS = ("lag", "lead")
AGGREGATE_FUNCTIONS = ("sum", "avg", "min", "max", "count")
#: the functions that need a ``column`` (``count`` without one counts rows)
NEEDS_COLUMN = ("lag", "lead", "sum", "avg", "min", "max")
WINDOW_FUNCTIONS = RANKING_FUNCTIONS + OFFSET_FUNCTIONS + AGGREGATE_FUNCTIONS


@attrs.frozen
class TimeWindow:
    """Tumbling windows of ``duration``, or sliding ones that start every ``slide``."""

    column: str
    duration: str | float
    slide: str | float | None = None
    start_offset: str | float | None = None


@attrs.frozen
class SessionWindow:
    """Session windows: a window per group that stays open while rows keep arriving less than
    ``gap`` apart, and closes ``gap`` after its last row."""

    column: str
    gap: str | float


@attrs.frozen
class WindowFunction:
    function: str = attrs.field(validator=one_of(*WINDOW_FUNCTIONS))
    column: str | None = None
    offset: int | None = attrs.field(default=None, validator=positive)
    default: Any = None


@attrs.frozen
class WindowOptions:
    time_window: TimeWindow | None = None
    session_window: SessionWindow | None = None
    group_by: list[str] = attrs.field(factory=list)
    aggregations: dict[str, str] = attrs.field(factory=dict)
    functions: dict[str, WindowFunction] = attrs.field(factory=dict)
    partition_by: list[str] = attrs.field(factory=list)
    order_by: list[str] = attrs.field(factory=list)
    frame: str = attrs.field(default="all", validator=one_of("all", "running"))


def _microseconds(value: str | float) -> int:
    return round(parse_duration(value) * 1_000_000)


def _interval(value: str | float) -> str:
    """A duration of the pipeline file (``10m``) as a Spark interval string."""
    return f"{_microseconds(value)} microseconds"


def _time_window_problems(window: TimeWindow) -> list[str]:
    problems = []
    if not window.column.strip():
        problems.append("`time_window.column` is empty")
    sizes: dict[str, int] = {}
    for key in ("duration", "slide", "start_offset"):
        value = getattr(window, key)
        if value is None:
            continue
        try:
            sizes[key] = _microseconds(value)
        except ValueProblem as exc:
            problems.append(f"`time_window.{key}`: {exc}")
            continue
        if sizes[key] < 0:
            problems.append(f"`time_window.{key}` cannot be negative, got {value!r}")
        elif sizes[key] == 0 and key != "start_offset":
            problems.append(f"`time_window.{key}` must be longer than 0, got {value!r}")
    duration, slide = sizes.get("duration"), sizes.get("slide", sizes.get("duration"))
    if duration and slide and slide > duration:
        problems.append(
            f"`time_window.slide` ({window.slide!r}) is longer than `duration` "
            f"({window.duration!r}): rows between windows would be lost"
        )
    offset = sizes.get("start_offset")
    if offset is not None and slide and offset >= slide:
        problems.append(
            f"`time_window.start_offset` ({window.start_offset!r}) must be shorter than the "
            f"slide ({window.slide or window.duration!r})"
        )
    return problems


def _session_window_problems(window: SessionWindow) -> list[str]:
    if not window.column.strip():
        return ["`session_window.column` is empty"]
    try:
        gap = _microseconds(window.gap)
    except ValueProblem as exc:
        return [f"`session_window.gap`: {exc}"]
    return [] if gap > 0 else [f"`session_window.gap` must be longer than 0, got {window.gap!r}"]


def _window_function_problems(name: str, fn: WindowFunction, ordered: bool) -> list[str]:
    at = f"`functions.{name}`"
    problems = []
    if fn.function in RANKING_FUNCTIONS and fn.column is not None:
        problems.append(f"{at}: {fn.function} takes no `column`")
    if fn.function in NEEDS_COLUMN and not fn.column:
        problems.append(f"{at}: {fn.function} needs `column`")
    if fn.function in RANKING_FUNCTIONS + OFFSET_FUNCTIONS and not ordered:
        problems.append(
            f"{at}: {fn.function} needs `order_by` (the order of rows in each partition)"
        )
    if fn.function not in OFFSET_FUNCTIONS:
        problems += [
            f"{at}: `{key}` applies only to lag and lead"
            for key in ("offset", "default")
            if getattr(fn, key) is not None
        ]
    elif not isinstance(fn.default, str | int | float | bool | None):
        problems.append(f"{at}: `default` must be a single value, got {fn.default!r}")
    return problems


class WindowTransform(Transformer):
    """Either time windows or window functions, on one input.

    Time windows (``time_window``: tumbling or sliding; ``session_window``: sessions that close
    after a gap; each with ``group_by`` and ``aggregations``): one row per window and group,
    with ``window_start`` and ``window_end``; in a stream they keep state across micro-batches.
    Window functions (``functions`` with ``partition_by``, ``order_by`` and ``frame``): a new
    column per function on every row.
    """

    name = "window"
    Options = WindowOptions
    capabilities = frozenset({"batch", "stateful"})

    def check(self, inputs: Sequence[str], options: WindowOptions) -> list[str]:
        kinds = [
            key
            for key, given in (
                ("time_window", options.time_window is not None),
                ("session_window", options.session_window is not None),
                ("functions", bool(options.functions)),
            )
            if given
        ]
        if len(kinds) > 1:
            return [
                f"use one of `time_window`, `session_window` (each with `group_by` and "
                f"`aggregations`) or `functions` (with `partition_by`, `order_by` and `frame`), "
                f"not {' and '.join(f'`{k}`' for k in kinds)}; split them into transforms"
            ]
        if not kinds:
            return [
                "give `time_window` or `session_window` (with `aggregations`) for time windows, "
                "or `functions` for window functions such as row_number, lag or a running sum"
            ]
        if kinds[0] != "functions":
            stray = [key for key in ("partition_by", "order_by") if getattr(options, key)]
            stray += ["frame"] if options.frame != "all" else []
            if stray:
                return [
                    f"{', '.join(f'`{k}`' for k in stray)} belong to window `functions`; "
                    "time windows are grouped by `group_by`"
                ]
            if options.time_window is not None:
                problems = _time_window_problems(options.time_window)
            else:
                problems = _session_window_problems(options.session_window)  # type: ignore[arg-type]
            problems += aggregation_problems(options.group_by, options.aggregations)
            problems += [
                f"`{key}.{name}`: {name!r} is the name of a time window's output column"
                for key, names in (
                    ("group_by", options.group_by),
                    ("aggregations", options.aggregations),
                )
                for name in names
                if name.lower() in WINDOW_COLUMNS
            ]
            return problems
        stray = [key for key in ("group_by", "aggregations") if getattr(options, key)]
        if stray:
            return [
                f"{' and '.join(f'`{k}`' for k in stray)} belong to `time_window`; window "
                "`functions` use `partition_by` (and `aggregate` groups without time windows)"
            ]
        problems = name_problems(options.functions, "functions")
        problems += column_list_problems(options.partition_by, "partition_by")
        problems += column_list_problems(options.order_by, "order_by")
        problems += sort_problems(options.order_by)
        for name, fn in options.functions.items():
            problems += _window_function_problems(name, fn, bool(options.order_by))
        if options.frame == "running" and not options.order_by:
            problems.append("`frame: running` needs `order_by` (a running total follows an order)")
        return problems

    def stream_problems(
        self, options: WindowOptions, *, watermark: str | None, output_mode: str
    ) -> list[str]:
        timed = options.time_window or options.session_window
        if timed is None:
            return [
                "window `functions` cannot run over a stream (Spark keeps no state for them): "
                "use `time_window` or `session_window`, or run them in a batch pipeline over "
                "the stream's output"
            ]
        return watermark_problems("a time window", timed.column, watermark, output_mode)

    def late(self, options: WindowOptions, column: str, watermark: Column) -> Column | None:
        """A row is late when every window it falls into has closed: its last window ends
        at or before the watermark (Spark drops it from each closed window)."""
        from pyspark.sql import functions as F

        timed = options.time_window or options.session_window
        if timed is None or timed.column != column:
            return None  # windows on another column carry no watermark: none is late
        micros = F.unix_micros(F.col(column))
        if options.session_window is not None:  # a row alone is a session of `gap`
            end = micros + _microseconds(options.session_window.gap)
        else:
            window = options.time_window
            assert window is not None
            duration = _microseconds(window.duration)
            slide = _microseconds(window.slide) if window.slide is not None else duration
            offset = _microseconds(window.start_offset or 0)
            end = micros - F.pmod(micros - F.lit(offset), F.lit(slide)) + F.lit(duration)
        return end <= F.unix_micros(watermark)

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: WindowOptions
    ) -> DataFrame:
        (df,) = inputs.values()
        if options.time_window is not None or options.session_window is not None:
            return self._time_windows(df, options)
        return self._window_functions(df, options)

    @staticmethod
    def _time_windows(df: DataFrame, options: WindowOptions) -> DataFrame:
        from pyspark.sql import functions as F

        column = free_name([*df.columns, *options.aggregations], "window")
        window, session = options.time_window, options.session_window
        if session is not None:
            bucket = F.session_window(F.col(session.column), _interval(session.gap))
        else:
            assert window is not None
            bucket = F.window(
                F.col(window.column),
                _interval(window.duration),
                _interval(window.slide) if window.slide is not None else None,
                _interval(window.start_offset) if window.start_offset is not None else None,
            )
        bucket = bucket.alias(column)
        grouped = df.groupBy(bucket, *options.group_by).agg(
            *aggregation_columns(options.aggregations)
        )
        return grouped.select(
            F.col(f"{column}.start").alias("window_start"),
            F.col(f"{column}.end").alias("window_end"),
            "*",
        ).drop(column)

    @staticmethod
    def _window_functions(df: DataFrame, options: WindowOptions) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        ordered = Window.partitionBy(*options.partition_by)
        if options.order_by:
            ordered = ordered.orderBy(*(SortKey.parse(t).column_expr() for t in options.order_by))
        if options.frame == "running":
            # RANGE, not ROWS: rows with equal order values get the same running value, so
            # the result does not depend on how Spark happens to order ties.
            framed = ordered.rangeBetween(Window.unboundedPreceding, Window.currentRow)
        else:
            framed = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)

        def expression(fn: WindowFunction) -> Column:
            if fn.function in RANKING_FUNCTIONS:
                ranking: Callable[[], Column] = getattr(F, fn.function)
                return ranking().over(ordered)
            if fn.function in OFFSET_FUNCTIONS:
                offset = getattr(F, fn.function)
                return offset(F.col(str(fn.column)), fn.offset or 1, fn.default).over(ordered)
            target = F.col(fn.column) if fn.column else F.lit(1)
            aggregate: Callable[[Column], Column] = getattr(F, fn.function)
            return aggregate(target).over(framed)

        return df.withColumns({name: expression(fn) for name, fn in options.functions.items()})
