"""Built-in transforms: ``sql``, ``join``, ``filter``, ``select``. All lazy: no Spark action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import attrs

from etl_core.api import Context, Transformer
from etl_core.options import one_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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
        if options.columns:
            df = df.selectExpr(*options.columns)
        if options.rename:
            df = df.withColumnsRenamed(options.rename)
        if options.cast:
            df = df.withColumns({c: F.col(c).cast(t) for c, t in options.cast.items()})
        return df
