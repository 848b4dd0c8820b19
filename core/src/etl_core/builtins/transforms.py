"""Built-in transforms: ``sql``, ``join``, ``filter``, ``select``, ``aggregate``, ``window``,
``deduplicate``, ``union``, ``python``. All lazy: no Spark action, no Python per row.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core.api import Context, Transformer
from etl_core.errors import ConfigError, EtlError, PermanentError
from etl_core.options import ValueProblem, one_of, parse_duration, positive

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


@attrs.frozen
class SqlOptions:
    query: str


class SqlTransform(Transformer):
    """Spark SQL over the named inputs; each input is a view with the dataset's name."""

    name = "sql"
    Options = SqlOptions
    inputs: ClassVar[tuple[int, int | None]] = (1, None)

    def check(self, inputs: Sequence[str], options: SqlOptions) -> list[str]:
        return [] if options.query.strip() else ["`query` is empty"]

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: SqlOptions
    ) -> DataFrame:
        for name, df in inputs.items():
            df.createOrReplaceTempView(name)
        return ctx.spark.sql(options.query)


JOIN_TYPES = ("inner", "left", "right", "full", "left_semi", "left_anti", "cross")


@attrs.frozen
class JoinOptions:
    on: list[str] = attrs.field(factory=list)
    how: str = attrs.field(default="inner", validator=one_of(*JOIN_TYPES))
    collisions: str = attrs.field(default="suffix", validator=one_of("suffix", "error"))


class JoinTransform(Transformer):
    """Join two or more inputs, left to right, on key columns they share.

    Non-key columns present on both sides keep their name from the left side; the right
    side's copy is renamed ``<column>_<input>`` (``collisions: suffix``), or the join is refused
    (``collisions: error``).
    """

    name = "join"
    Options = JoinOptions
    inputs: ClassVar[tuple[int, int | None]] = (2, None)

    def check(self, inputs: Sequence[str], options: JoinOptions) -> list[str]:
        if options.how == "cross" and options.on:
            return ["a cross join takes no `on` keys"]
        if options.how != "cross" and not options.on:
            return ["`on` is required: list the key columns, e.g. `on: [user_id]`"]
        return []

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: JoinOptions
    ) -> DataFrame:
        from etl_core.errors import ConfigError

        names = list(inputs)
        result = inputs[names[0]]
        for name in names[1:]:
            right = inputs[name]
            clashes = sorted((set(result.columns) & set(right.columns)) - set(options.on))
            if clashes and options.collisions == "error":
                raise ConfigError.at(
                    f"transforms.{ctx.dataset}",
                    f"columns {', '.join(clashes)} are in {name!r} and in an earlier input",
                    "rename them first (a `select` transform) or set `collisions: suffix`",
                )
            right = right.withColumnsRenamed({c: f"{c}_{name}" for c in clashes})
            if options.how == "cross":
                result = result.crossJoin(right)
            else:
                result = result.join(right, on=list(options.on), how=options.how)
        return result


@attrs.frozen
class FilterOptions:
    condition: str


class FilterTransform(Transformer):
    """Keep the rows where a Spark SQL condition holds."""

    name = "filter"
    Options = FilterOptions

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: FilterOptions
    ) -> DataFrame:
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        return df.filter(F.expr(options.condition))


@attrs.frozen
class SelectOptions:
    columns: list[str] | None = None
    rename: dict[str, str] = attrs.field(factory=dict)
    cast: dict[str, str] = attrs.field(factory=dict)


class SelectTransform(Transformer):
    """Pick columns or expressions (``upper(name) AS name``), then rename, then cast."""

    name = "select"
    Options = SelectOptions

    def check(self, inputs: Sequence[str], options: SelectOptions) -> list[str]:
        if not (options.columns or options.rename or options.cast):
            return ["give at least one of `columns`, `rename` or `cast`"]
        return []

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: SelectOptions
    ) -> DataFrame:
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        routed = bool(options.cast) and ctx.dead_letter_sink
        if routed:  # the input row as JSON, for the dead letters (pruned where unused)
            row = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
            df = df.withColumn(_INPUT_ROW, row)
        if options.columns:
            extra = [F.col(_INPUT_ROW).alias(_INPUT_ROW + "_")] if routed else []
            df = df.select(*[F.expr(c) for c in options.columns], *extra)
            if routed:  # a `*` in the columns picks the row up too
                df = df.drop(_INPUT_ROW).withColumnRenamed(_INPUT_ROW + "_", _INPUT_ROW)
        if options.rename:
            df = df.withColumnsRenamed(options.rename)
        if not options.cast:
            return df
        if not routed:
            return df.withColumns({c: F.col(c).cast(t) for c, t in options.cast.items()})
        # try_cast semantics: a value that does not convert sends its row to the dead letters
        failed = {
            f"_etl_cast_{i}": F.col(c).isNotNull() & F.col(c).try_cast(t).isNull()
            for i, (c, t) in enumerate(options.cast.items())
        }
        flagged = df.withColumns(failed)
        reasons = F.filter(
            F.array(
                *[
                    F.when(
                        F.col(f"_etl_cast_{i}"),
                        F.struct(
                            F.lit("cast").alias("rule"),
                            F.concat(
                                F.lit(f"cannot cast {c} value "),
                                F.col(c).cast("string"),
                                F.lit(f" to {t}"),
                            ).alias("message"),
                            F.lit("error").alias("severity"),
                        ),
                    )
                    for i, (c, t) in enumerate(options.cast.items())
                ]
            ),
            lambda reason: reason.isNotNull(),
        )
        broken = F.lit(False)
        for flag in failed:
            broken = broken | F.col(flag)
        ctx.dead_letter(
            "transform",
            flagged.filter(broken).select(reasons.alias("errors"), F.col(_INPUT_ROW).alias("row")),
        )
        casts = {c: F.col(c).try_cast(t) for c, t in options.cast.items()}
        return flagged.filter(~broken).withColumns(casts).drop(_INPUT_ROW, *failed)


_INPUT_ROW = "_etl_input_row"


# --- helpers shared by the transforms below -----------------------------------------------

#: names the transforms below give to new columns: plain identifiers, easy to use in SQL
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SORT = re.compile(
    r"^\s*(?P<column>\S+?)(?:\s+(?P<direction>asc|desc))?(?:\s+nulls\s+(?P<nulls>first|last))?\s*$",
    re.IGNORECASE,
)


def _name_problems(names: Iterable[str], key: str) -> list[str]:
    return [
        f"`{key}.{name}`: {name!r} is not a valid column name; use letters, digits and "
        "underscores, not starting with a digit"
        for name in names
        if not _OUTPUT_NAME.match(name)
    ]


def _column_list_problems(columns: Sequence[str], key: str) -> list[str]:
    problems = [f"`{key}[{i}]` is empty" for i, column in enumerate(columns) if not column.strip()]
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            problems.append(f"`{key}` lists {column!r} twice")
        seen.add(column)
    return problems


def _expression_problems(expressions: Mapping[str, str], key: str) -> list[str]:
    return [f"`{key}.{name}` is empty" for name, text in expressions.items() if not text.strip()]


@attrs.frozen
class _SortKey:
    """One ``order_by`` item: ``"column [ASC|DESC] [NULLS FIRST|NULLS LAST]"``.

    Nulls sort first in ascending and last in descending order unless told otherwise (Spark's
    defaults)."""

    column: str
    descending: bool
    nulls_first: bool

    @classmethod
    def parse(cls, text: str) -> _SortKey:
        match = _SORT.match(text)
        if match is None:
            raise ValueProblem(f"{text!r} is not 'column [ASC|DESC] [NULLS FIRST|NULLS LAST]'")
        descending = (match["direction"] or "asc").lower() == "desc"
        nulls = match["nulls"]
        return cls(
            match["column"], descending, nulls.lower() == "first" if nulls else not descending
        )

    def reversed(self) -> _SortKey:
        """The exact opposite order (nulls too), so the last row becomes the first."""
        return _SortKey(self.column, not self.descending, not self.nulls_first)

    def column_expr(self) -> Column:
        from pyspark.sql import functions as F

        column = F.col(self.column)
        if self.descending:
            return column.desc_nulls_first() if self.nulls_first else column.desc_nulls_last()
        return column.asc_nulls_first() if self.nulls_first else column.asc_nulls_last()


def _sort_problems(order_by: Sequence[str], key: str = "order_by") -> list[str]:
    problems = []
    for i, text in enumerate(order_by):
        try:
            _SortKey.parse(text)
        except ValueProblem as exc:
            problems.append(f"`{key}[{i}]`: {exc}")
    return problems


def _free_name(taken: Iterable[str], base: str) -> str:
    """A column name not in ``taken`` (compared case-insensitively, as Spark resolves)."""
    lowered = {name.lower() for name in taken}
    name = base
    while name.lower() in lowered:
        name = f"_{name}"
    return name


def _aggregations(aggregations: Mapping[str, str]) -> list[Column]:
    from pyspark.sql import functions as F

    return [F.expr(text).alias(name) for name, text in aggregations.items()]


# --- aggregate ----------------------------------------------------------------------------


@attrs.frozen
class AggregateOptions:
    aggregations: dict[str, str]
    group_by: list[str] = attrs.field(factory=list)


def _aggregation_problems(group_by: Sequence[str], aggregations: Mapping[str, str]) -> list[str]:
    problems = _column_list_problems(group_by, "group_by")
    if not aggregations:
        problems.append(
            "`aggregations` is empty: name at least one output, e.g. "
            '`aggregations: {total: "sum(amount)"}`'
        )
    problems += _name_problems(aggregations, "aggregations")
    problems += _expression_problems(aggregations, "aggregations")
    clashes = sorted({c.lower() for c in group_by} & {n.lower() for n in aggregations})
    problems += [f"`aggregations.{name}` has the name of a `group_by` column" for name in clashes]
    return problems


class AggregateTransform(Transformer):
    """Group rows by ``group_by`` columns (none: the whole dataset is one group) and compute
    named Spark SQL aggregate expressions, e.g. ``{total: "sum(amount)"}``."""

    name = "aggregate"
    Options = AggregateOptions

    def check(self, inputs: Sequence[str], options: AggregateOptions) -> list[str]:
        return _aggregation_problems(options.group_by, options.aggregations)

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: AggregateOptions
    ) -> DataFrame:
        (df,) = inputs.values()
        return df.groupBy(*options.group_by).agg(*_aggregations(options.aggregations))


# --- window -------------------------------------------------------------------------------

RANKING_FUNCTIONS = ("row_number", "rank", "dense_rank")
OFFSET_FUNCTIONS = ("lag", "lead")
AGGREGATE_FUNCTIONS = ("sum", "avg", "min", "max", "count")
#: ``count`` without a column counts rows
NEED_COLUMN = ("lag", "lead", "sum", "avg", "min", "max")
WINDOW_FUNCTIONS = RANKING_FUNCTIONS + OFFSET_FUNCTIONS + AGGREGATE_FUNCTIONS


@attrs.frozen
class TimeWindow:
    """Tumbling windows of ``duration``, or sliding ones that start every ``slide``."""

    column: str
    duration: str | float
    slide: str | float | None = None
    start_offset: str | float | None = None


@attrs.frozen
class WindowFunction:
    function: str = attrs.field(validator=one_of(*WINDOW_FUNCTIONS))
    column: str | None = None
    offset: int | None = attrs.field(default=None, validator=positive)
    default: Any = None


@attrs.frozen
class WindowOptions:
    time_window: TimeWindow | None = None
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


def _function_problems(name: str, fn: WindowFunction, ordered: bool) -> list[str]:
    at = f"`functions.{name}`"
    problems = []
    if fn.function in RANKING_FUNCTIONS and fn.column is not None:
        problems.append(f"{at}: {fn.function} takes no `column`")
    if fn.function in NEED_COLUMN and not fn.column:
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

    Time windows (``time_window`` with ``group_by`` and ``aggregations``): one row per window
    and group, with ``window_start`` and ``window_end``. Window functions (``functions`` with
    ``partition_by``, ``order_by`` and ``frame``): a new column per function on every row.
    """

    name = "window"
    Options = WindowOptions

    def check(self, inputs: Sequence[str], options: WindowOptions) -> list[str]:
        timed, functions = options.time_window is not None, bool(options.functions)
        if timed and functions:
            return [
                "use either `time_window` (with `group_by` and `aggregations`) or `functions` "
                "(with `partition_by`, `order_by` and `frame`), not both; split them into two "
                "transforms"
            ]
        if options.time_window is not None:
            stray = [key for key in ("partition_by", "order_by") if getattr(options, key)]
            stray += ["frame"] if options.frame != "all" else []
            if stray:
                return [
                    f"{', '.join(f'`{k}`' for k in stray)} belong to window `functions`; "
                    "time windows are grouped by `group_by`"
                ]
            problems = _time_window_problems(options.time_window)
            problems += _aggregation_problems(options.group_by, options.aggregations)
            taken = {"window_start", "window_end"}
            problems += [
                f"`{key}.{name}`: {name!r} is the name of a time window's output column"
                for key, names in (
                    ("group_by", options.group_by),
                    ("aggregations", options.aggregations),
                )
                for name in names
                if name.lower() in taken
            ]
            return problems
        if not functions:
            return [
                "give `time_window` (with `aggregations`) for time windows, or `functions` for "
                "window functions such as row_number, lag or a running sum"
            ]
        stray = [key for key in ("group_by", "aggregations") if getattr(options, key)]
        if stray:
            return [
                f"{' and '.join(f'`{k}`' for k in stray)} belong to `time_window`; window "
                "`functions` use `partition_by` (and `aggregate` groups without time windows)"
            ]
        problems = _name_problems(options.functions, "functions")
        problems += _column_list_problems(options.partition_by, "partition_by")
        problems += _column_list_problems(options.order_by, "order_by")
        problems += _sort_problems(options.order_by)
        for name, fn in options.functions.items():
            problems += _function_problems(name, fn, bool(options.order_by))
        if options.frame == "running" and not options.order_by:
            problems.append("`frame: running` needs `order_by` (a running total follows an order)")
        return problems

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: WindowOptions
    ) -> DataFrame:
        (df,) = inputs.values()
        if options.time_window is not None:
            return self._time_windows(df, options.time_window, options)
        return self._functions(df, options)

    @staticmethod
    def _time_windows(df: DataFrame, window: TimeWindow, options: WindowOptions) -> DataFrame:
        from pyspark.sql import functions as F

        column = _free_name([*df.columns, *options.aggregations], "window")
        bucket = F.window(
            F.col(window.column),
            _interval(window.duration),
            _interval(window.slide) if window.slide is not None else None,
            _interval(window.start_offset) if window.start_offset is not None else None,
        ).alias(column)
        grouped = df.groupBy(bucket, *options.group_by).agg(*_aggregations(options.aggregations))
        return grouped.select(
            F.col(f"{column}.start").alias("window_start"),
            F.col(f"{column}.end").alias("window_end"),
            "*",
        ).drop(column)

    @staticmethod
    def _functions(df: DataFrame, options: WindowOptions) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        ordered = Window.partitionBy(*options.partition_by)
        if options.order_by:
            ordered = ordered.orderBy(*(_SortKey.parse(t).column_expr() for t in options.order_by))
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


# --- deduplicate --------------------------------------------------------------------------


@attrs.frozen
class DeduplicateOptions:
    keys: list[str] = attrs.field(factory=list)
    order_by: list[str] = attrs.field(factory=list)
    keep: str = attrs.field(default="first", validator=one_of("first", "last"))


class DeduplicateTransform(Transformer):
    """Keep one row per distinct value of ``keys`` (of all columns when ``keys`` is empty).

    With ``order_by``, the first (``keep: first``) or last (``keep: last``) row of each key in
    that order; without it, any one row. Null keys are equal to each other: the rows whose key
    is null form one group.
    """

    name = "deduplicate"
    Options = DeduplicateOptions

    def check(self, inputs: Sequence[str], options: DeduplicateOptions) -> list[str]:
        problems = _column_list_problems(options.keys, "keys")
        problems += _column_list_problems(options.order_by, "order_by")
        problems += _sort_problems(options.order_by)
        if options.order_by and not options.keys:
            problems.append(
                "`order_by` needs `keys`: without keys, duplicates are rows equal in every "
                "column, so which one is kept makes no difference"
            )
        if options.keep == "last" and not options.order_by:
            problems.append("`keep: last` needs `order_by` (the order that says which is last)")
        return problems

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: DeduplicateOptions
    ) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        if not options.order_by:
            return df.dropDuplicates(list(options.keys) or None)
        order = [_SortKey.parse(text) for text in options.order_by]
        if options.keep == "last":
            order = [k.reversed() for k in order]
        position = _free_name(df.columns, "_etl_row_number")
        in_key = Window.partitionBy(*options.keys).orderBy(*(k.column_expr() for k in order))
        return (
            df.withColumn(position, F.row_number().over(in_key))
            .filter(F.col(position) == 1)
            .drop(position)
        )


# --- union --------------------------------------------------------------------------------


@attrs.frozen
class UnionOptions:
    allow_missing_columns: bool = False
    distinct: bool = False


class UnionTransform(Transformer):
    """Stack two or more inputs, matching columns by name (in the first input's order).

    Spark widens column types where they differ (int and bigint give bigint). With
    ``allow_missing_columns``, a column missing from an input is null in its rows; without
    it, inputs must have the same columns. ``distinct`` drops duplicate rows.
    """

    name = "union"
    Options = UnionOptions
    inputs: ClassVar[tuple[int, int | None]] = (2, None)

    def check(self, inputs: Sequence[str], options: UnionOptions) -> list[str]:
        # The runner passes inputs as a mapping by name: a repeated name would be read once.
        return _column_list_problems(inputs, "inputs")

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: UnionOptions
    ) -> DataFrame:
        if not options.allow_missing_columns:
            case_sensitive = str(ctx.spark.conf.get("spark.sql.caseSensitive", "false"))
            lacking = _lacking_columns(inputs, case_sensitive.lower() == "true")
            if lacking:
                raise ConfigError.at(
                    f"transforms.{ctx.dataset}",
                    "the inputs have different columns: "
                    + "; ".join(f"{name!r} lacks {', '.join(cols)}" for name, cols in lacking),
                    "set `allow_missing_columns: true` to fill missing columns with nulls, or "
                    "give the inputs the same columns first (a `select` transform)",
                )
        frames = list(inputs.values())
        result = frames[0]
        for df in frames[1:]:
            result = result.unionByName(df, allowMissingColumns=options.allow_missing_columns)
        return result.distinct() if options.distinct else result


def _lacking_columns(
    inputs: Mapping[str, DataFrame], case_sensitive: bool
) -> list[tuple[str, list[str]]]:
    """For each input missing some of the columns of the others: its name and those columns."""

    def key(column: str) -> str:
        return column if case_sensitive else column.lower()

    every: dict[str, str] = {}
    for df in inputs.values():
        for column in df.columns:
            every.setdefault(key(column), column)
    lacking = []
    for name, df in inputs.items():
        present = {key(c) for c in df.columns}
        missing = [column for k, column in every.items() if k not in present]
        if missing:
            lacking.append((name, missing))
    return lacking


# --- python -------------------------------------------------------------------------------


@attrs.frozen
class PythonOptions:
    function: str
    options: dict[str, Any] = attrs.field(factory=dict)


def _function_reference(text: str) -> tuple[str, str] | None:
    """``"package.module:function"`` (or ``module:Class.method``) → its two halves."""
    module, sep, attribute = text.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not sep or not all(part.isidentifier() for part in parts):
        return None
    return module, attribute


class PythonTransform(Transformer):
    """Call ``function(inputs, options)`` from a Python module: ``inputs`` maps each input's
    name to its DataFrame, ``options`` is the block's ``options`` mapping. The function must
    return a DataFrame, built lazily (no Spark action, no collect)."""

    name = "python"
    Options = PythonOptions
    inputs: ClassVar[tuple[int, int | None]] = (1, None)

    def check(self, inputs: Sequence[str], options: PythonOptions) -> list[str]:
        if _function_reference(options.function) is None:
            return [
                f"`function`: {options.function!r} is not a 'module:function' reference; "
                "write e.g. `function: my_package.transforms:enrich`"
            ]
        return []

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: PythonOptions
    ) -> DataFrame:
        from pyspark.errors import AnalysisException
        from pyspark.sql import DataFrame

        from etl_core.errors import short_error

        path = f"transforms.{ctx.dataset}"
        function = _load_function(f"{path}.function", options.function)
        try:
            result = function(MappingProxyType(dict(inputs)), copy.deepcopy(options.options))
        except (EtlError, AnalysisException):
            raise  # the runner reports analysis errors as config errors of this transform
        except Exception as exc:
            raise PermanentError(
                f"{path}: {options.function} raised {type(exc).__name__}: {short_error(exc)}"
            ) from exc
        if not isinstance(result, DataFrame):
            raise PermanentError(
                f"{path}: {options.function} returned {type(result).__name__}, not a DataFrame"
            )
        return result


def _load_function(path: str, reference: str) -> Callable[..., Any]:
    """Import the function named by a ``module:function`` reference (checked by ``check``)."""
    parsed = _function_reference(reference)
    if parsed is None:
        raise ConfigError.at(path, f"{reference!r} is not a 'module:function' reference")
    module_name, attribute = parsed
    fix = (
        "check the reference; the module must be importable where etl runs (an installed "
        "package, or a folder on PYTHONPATH)"
    )
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and f"{module_name}.".startswith(f"{exc.name}."):
            raise ConfigError.at(
                path, f"cannot import {reference!r}: no module named {exc.name!r}", fix
            ) from None
        raise PermanentError(f"{path}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # any error of the user's own module, reported with its path
        raise PermanentError(
            f"{path}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError.at(
                path, f"cannot import {reference!r}: {module_name!r} has no {attribute!r}", fix
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError.at(path, f"{reference!r} is not a function", fix)
    return target  # type: ignore[no-any-return]
