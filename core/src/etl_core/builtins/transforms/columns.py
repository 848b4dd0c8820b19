"""Column expressions and names shared by the transforms: sort keys, named aggregations and
names for helper columns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from etl_core.options import ValueProblem

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

#: the metadata key Spark puts on the column a watermark was defined on
WATERMARK_KEY = "spark.watermarkDelayMs"

_SORT_KEY = re.compile(
    r"^\s*(?P<column>\S+?)(?:\s+(?P<direction>asc|desc))?(?:\s+nulls\s+(?P<nulls>first|last))?\s*$",
    re.IGNORECASE,
)


@attrs.frozen
class SortKey:
    """One ``order_by`` item: ``"column [ASC|DESC] [NULLS FIRST|NULLS LAST]"``.

    Nulls sort first in ascending and last in descending order unless told otherwise (Spark's
    defaults)."""

    column: str
    descending: bool
    nulls_first: bool

    @classmethod
    def parse(cls, text: str) -> SortKey:
        match = _SORT_KEY.match(text)
        if match is None:
            raise ValueProblem(f"{text!r} is not 'column [ASC|DESC] [NULLS FIRST|NULLS LAST]'")
        descending = (match["direction"] or "asc").lower() == "desc"
        nulls = match["nulls"]
        return cls(
            match["column"], descending, nulls.lower() == "first" if nulls else not descending
        )

    def reversed(self) -> SortKey:
        """The exact opposite order (nulls too), so the last row becomes the first."""
        return SortKey(self.column, not self.descending, not self.nulls_first)

    def column_expr(self) -> Column:
        from pyspark.sql import functions as F

        column = F.col(self.column)
        if self.descending:
            return column.desc_nulls_first() if self.nulls_first else column.desc_nulls_last()
        return column.asc_nulls_first() if self.nulls_first else column.asc_nulls_last()


def free_name(taken: Iterable[str], base: str) -> str:
    """A column name not in ``taken`` (compared case-insensitively, as Spark resolves)."""
    lowered = {name.lower() for name in taken}
    name = base
    while name.lower() in lowered:
        name = f"_{name}"
    return name


def aggregation_columns(aggregations: Mapping[str, str]) -> list[Column]:
    """Each named Spark SQL aggregate expression as a column with that name."""
    from pyspark.sql import functions as F

    return [F.expr(text).alias(name) for name, text in aggregations.items()]


def watermark_column(df: DataFrame) -> str | None:
    """The column of a streaming DataFrame that carries a watermark, if one does."""
    return next((f.name for f in df.schema.fields if WATERMARK_KEY in f.metadata), None)
