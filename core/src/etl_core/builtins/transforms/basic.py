"""The relational-algebra transforms: ``sql``, ``join``, ``filter``, ``select`` and ``union``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import attrs

from etl_core.api import Context, Transformer
from etl_core.builtins.transforms.checks import column_list_problems
from etl_core.datasources import row_json
from etl_core.errors import ConfigError
from etl_core.options import one_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: the column ``select`` carries each input row in (as JSON) for its dead letters
_INPUT_ROW = "_etl_input_row"


@attrs.frozen
class SqlOptions:
    query: str


class SqlTransform(Transformer):
    """Spark SQL over the named inputs; each input is a view with the dataset's name."""

    name = "sql"
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
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
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
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
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
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
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
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
            row = row_json(*[F.col(f"`{c}`") for c in df.columns])
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
    #: row by row (a join or union with a static source too): each micro-batch on its own
    capabilities = frozenset({"batch", "streaming"})
    Options = UnionOptions
    inputs: ClassVar[tuple[int, int | None]] = (2, None)

    def check(self, inputs: Sequence[str], options: UnionOptions) -> list[str]:
        # The runner passes inputs as a mapping by name: a repeated name would be read once.
        return column_list_problems(inputs, "inputs")

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
