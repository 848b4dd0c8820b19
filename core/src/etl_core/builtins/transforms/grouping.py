"""Transforms that keep one row per group: ``aggregate`` and ``deduplicate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from etl_core.api import Context, Transformer
from etl_core.builtins.transforms.checks import (
    aggregation_problems,
    column_list_problems,
    sort_problems,
    watermark_problems,
)
from etl_core.builtins.transforms.columns import (
    SortKey,
    aggregation_columns,
    free_name,
    watermark_column,
)
from etl_core.options import one_of

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


@attrs.frozen
class AggregateOptions:
    aggregations: dict[str, str]
    group_by: list[str] = attrs.field(factory=list)


class AggregateTransform(Transformer):
    """Group rows by ``group_by`` columns (none: the whole dataset is one group) and compute
    named Spark SQL aggregate expressions, e.g. ``{total: "sum(amount)"}``."""

    name = "aggregate"
    Options = AggregateOptions
    capabilities = frozenset({"batch", "stateful"})

    def check(self, inputs: Sequence[str], options: AggregateOptions) -> list[str]:
        return aggregation_problems(options.group_by, options.aggregations)

    def stream_problems(
        self, options: AggregateOptions, *, watermark: str | None, output_mode: str
    ) -> list[str]:
        if watermark is None or output_mode != "append":
            return watermark_problems("an aggregate", None, watermark, output_mode)
        if watermark in options.group_by:
            return []
        return [
            f"in a stream in append mode, an aggregate must group by the watermark's column "
            f"{watermark!r} (Spark could never tell when a group is complete): use the `window` "
            "transform for time windows, or set `output_mode: update`"
        ]

    def late(self, options: AggregateOptions, column: str, watermark: Column) -> Column | None:
        from pyspark.sql import functions as F

        return F.col(column) <= watermark if column in options.group_by else None

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: AggregateOptions
    ) -> DataFrame:
        (df,) = inputs.values()
        return df.groupBy(*options.group_by).agg(*aggregation_columns(options.aggregations))


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
    capabilities = frozenset({"batch", "stateful"})

    def check(self, inputs: Sequence[str], options: DeduplicateOptions) -> list[str]:
        problems = column_list_problems(options.keys, "keys")
        problems += column_list_problems(options.order_by, "order_by")
        problems += sort_problems(options.order_by)
        if options.order_by and not options.keys:
            problems.append(
                "`order_by` needs `keys`: without keys, duplicates are rows equal in every "
                "column, so which one is kept makes no difference"
            )
        if options.keep == "last" and not options.order_by:
            problems.append("`keep: last` needs `order_by` (the order that says which is last)")
        return problems

    def stream_problems(
        self, options: DeduplicateOptions, *, watermark: str | None, output_mode: str
    ) -> list[str]:
        problems = watermark_problems("deduplicate", None, watermark, output_mode)
        if options.order_by:
            problems.append(
                "in a stream, deduplicate keeps the first row of each key to arrive: remove "
                "`order_by` and `keep`"
            )
        return problems

    def late(self, options: DeduplicateOptions, column: str, watermark: Column) -> Column | None:
        from pyspark.sql import functions as F

        return F.col(column) <= watermark

    def transform(
        self, ctx: Context, inputs: Mapping[str, DataFrame], options: DeduplicateOptions
    ) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        if df.isStreaming and watermark_column(df) is not None:
            # a key is remembered until the watermark passes its first row's event time
            return df.dropDuplicatesWithinWatermark(list(options.keys) or None)
        if not options.order_by:
            return df.dropDuplicates(list(options.keys) or None)
        order = [SortKey.parse(text) for text in options.order_by]
        if options.keep == "last":
            order = [k.reversed() for k in order]
        position = free_name(df.columns, "_etl_row_number")
        in_key = Window.partitionBy(*options.keys).orderBy(*(k.column_expr() for k in order))
        return (
            df.withColumn(position, F.row_number().over(in_key))
            .filter(F.col(position) == 1)
            .drop(position)
        )
