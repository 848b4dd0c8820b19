"""Built-in data-quality rules and schema checks (DESIGN §8).

Row rules (not_null, unique, range, regex, accepted_values, sql) give a flag column per rule,
computed in the pass that stages the data; dataset rules (row_count, freshness) are aggregates
observed in that same pass. ``unique`` flags every row of a duplicated key (a window over the
key: the one shuffle it needs); rows with a null key are never duplicates, as in SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from etl_core.api import Context, Validation, Validator
from etl_core.options import duration, parse_duration

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def _columns(value: Any) -> Any:
    """``a`` or ``[a, b]`` → ``{columns: [...]}``; a mapping stays as it is."""
    if isinstance(value, str):
        return {"columns": [value]}
    if isinstance(value, list):
        return {"columns": value}
    return value


@attrs.frozen
class ColumnsOptions:
    columns: list[str]


class _ColumnsRule(Validator):
    """A rule over a list of columns, written ``rule: column`` or ``rule: [a, b]``."""

    Options = ColumnsOptions

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return _columns(value)

    def check(self, options: ColumnsOptions) -> list[str]:
        return [] if options.columns else ["list at least one column"]

    def columns(self, options: ColumnsOptions) -> list[str]:
        return list(options.columns)


class NotNull(_ColumnsRule):
    """Row rule: each listed column has a value."""

    name = "not_null"

    def validate(self, ctx: Context, df: DataFrame, options: ColumnsOptions) -> Validation:
        from pyspark.sql import functions as F

        flag = _any([F.col(c).isNull() for c in options.columns])
        return Validation(flag=flag, message=f"null in {', '.join(options.columns)}")


class Unique(_ColumnsRule):
    """Row rule: no two rows share the listed columns' values (all rows of a duplicate flagged)."""

    name = "unique"

    def validate(self, ctx: Context, df: DataFrame, options: ColumnsOptions) -> Validation:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        keys = [F.col(c) for c in options.columns]
        same_key = Window.partitionBy(*keys)
        flag = (F.count(F.lit(1)).over(same_key) > 1) & ~_any([k.isNull() for k in keys])
        return Validation(flag=flag, message=f"duplicate {', '.join(options.columns)}")


@attrs.frozen
class RangeOptions:
    column: str
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True


class Range(Validator):
    """Row rule: the column's value lies between min and max (nulls pass: pair with not_null)."""

    name = "range"
    Options = RangeOptions

    def check(self, options: RangeOptions) -> list[str]:
        return _bounds_problems(options.min, options.max)

    def columns(self, options: RangeOptions) -> list[str]:
        return [options.column]

    def validate(self, ctx: Context, df: DataFrame, options: RangeOptions) -> Validation:
        from pyspark.sql import functions as F

        value = F.col(options.column)
        broken = []
        if options.min is not None:
            broken.append(value < options.min if options.min_inclusive else value <= options.min)
        if options.max is not None:
            broken.append(value > options.max if options.max_inclusive else value >= options.max)
        low = "[" if options.min_inclusive else "("
        high = "]" if options.max_inclusive else ")"
        span = f"{low}{_show(options.min)}, {_show(options.max)}{high}"
        return Validation(flag=_any(broken), message=f"{options.column} outside {span}")


@attrs.frozen
class RegexOptions:
    column: str
    pattern: str


class Regex(Validator):
    """Row rule: the column's text matches the pattern (Java regex, searched; nulls pass)."""

    name = "regex"
    Options = RegexOptions

    def check(self, options: RegexOptions) -> list[str]:
        """Java's regex runs the rule; without a JVM here, Python's checks the pattern once
        the syntax only Java has is set aside, and the syntax only Python has is refused."""
        pattern = options.pattern
        if re.search(r"\(\?P[<=>]", pattern):
            return [
                f"invalid regex {pattern!r}: `(?P...)` is Python's syntax; the rule runs Java's "
                "regex, where a named group is `(?<name>...)` and a back reference `\\k<name>`"
            ]
        java_only = re.sub(r"\\[pP]\{\w+\}|\\[pP][A-Z]|\\[hHRX]|\\Q.*?(\\E|$)", "x", pattern)
        java_only = re.sub(r"\\k<(\w+)>", r"(?P=\1)", java_only.replace("(?<", "(?P<"))
        java_only = java_only.replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
        try:
            re.compile(java_only)
        except re.error as exc:
            return [f"invalid regex {pattern!r}: {exc}"]
        return []

    def columns(self, options: RegexOptions) -> list[str]:
        return [options.column]

    def validate(self, ctx: Context, df: DataFrame, options: RegexOptions) -> Validation:
        from pyspark.sql import functions as F

        text = F.col(options.column).cast("string")
        pattern = options.pattern
        if _LITERAL.fullmatch(pattern):  # plain text: a byte search, without Java's regex
            matches = text.contains(pattern)
        elif pattern.startswith("^") and _LITERAL.fullmatch(pattern[1:]):
            matches = text.startswith(pattern[1:])
        else:
            matches = text.rlike(pattern)
        return Validation(flag=~matches, message=f"{options.column} does not match {pattern}")


#: a pattern without any of Java regex's metacharacters matches exactly where its text occurs
_LITERAL = re.compile(r"[^\\^$.|?*+()\[\]{}]+")


@attrs.frozen
class AcceptedValuesOptions:
    column: str
    values: list[Any]


class AcceptedValues(Validator):
    """Row rule: the column's value is one of the listed values (nulls pass)."""

    name = "accepted_values"
    Options = AcceptedValuesOptions

    def check(self, options: AcceptedValuesOptions) -> list[str]:
        return [] if options.values else ["list at least one accepted value"]

    def columns(self, options: AcceptedValuesOptions) -> list[str]:
        return [options.column]

    def validate(self, ctx: Context, df: DataFrame, options: AcceptedValuesOptions) -> Validation:
        from pyspark.sql import functions as F

        flag = ~F.col(options.column).isin(list(options.values))
        shown = ", ".join(map(str, options.values))
        return Validation(flag=flag, message=f"{options.column} not in [{shown}]")


@attrs.frozen
class SqlRuleOptions:
    expression: str


class SqlRule(Validator):
    """Row rule: a Spark SQL boolean expression holds for the row (null counts as broken)."""

    name = "sql"
    Options = SqlRuleOptions

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"expression": value} if isinstance(value, str) else value

    def check(self, options: SqlRuleOptions) -> list[str]:
        return [] if options.expression.strip() else ["the expression is empty"]

    def validate(self, ctx: Context, df: DataFrame, options: SqlRuleOptions) -> Validation:
        from pyspark.sql import functions as F

        flag = ~F.coalesce(F.expr(options.expression), F.lit(False))
        return Validation(flag=flag, message=f"not ({options.expression})")


@attrs.frozen
class RowCountOptions:
    min: int | None = None
    max: int | None = None


class RowCount(Validator):
    """Dataset rule: the dataset has between min and max rows."""

    name = "row_count"
    Options = RowCountOptions

    def check(self, options: RowCountOptions) -> list[str]:
        return _bounds_problems(options.min, options.max)

    def validate(self, ctx: Context, df: DataFrame, options: RowCountOptions) -> Validation:
        from pyspark.sql import functions as F

        def verdict(observed: Mapping[str, Any]) -> tuple[bool, str]:
            rows = observed["rows"]
            low_ok = options.min is None or rows >= options.min
            high_ok = options.max is None or rows <= options.max
            return (
                low_ok and high_ok,
                f"{rows} rows (expected {_show(options.min)}..{_show(options.max)})",
            )

        return Validation(aggregates={"rows": F.count(F.lit(1))}, verdict=verdict)


@attrs.frozen
class FreshnessOptions:
    column: str
    max_age: str = attrs.field(validator=duration)


class Freshness(Validator):
    """Dataset rule: the newest value of a timestamp column is at most ``max_age`` old."""

    name = "freshness"
    Options = FreshnessOptions

    def columns(self, options: FreshnessOptions) -> list[str]:
        return [options.column]

    def validate(self, ctx: Context, df: DataFrame, options: FreshnessOptions) -> Validation:
        from pyspark.sql import functions as F

        max_age = dt.timedelta(seconds=parse_duration(options.max_age))

        def verdict(observed: Mapping[str, Any]) -> tuple[bool, str]:
            newest = observed["newest"]
            if newest is None:
                return False, f"{options.column} has no values"
            if newest.tzinfo is None:  # Spark returns session-local naive datetimes
                newest = newest.replace(tzinfo=dt.UTC)
            age = dt.datetime.now(dt.UTC) - newest
            return age <= max_age, f"newest {options.column} is {age} old (max {options.max_age})"

        newest = F.max(F.col(options.column).cast("timestamp"))
        return Validation(aggregates={"newest": newest}, verdict=verdict)


BUILTIN_RULES = (NotNull, Unique, Range, Regex, AcceptedValues, SqlRule, RowCount, Freshness)


def _any(conditions: list[Column]) -> Column:
    from pyspark.sql import functions as F

    flag = F.lit(False)
    for condition in conditions:
        flag = flag | F.coalesce(condition, F.lit(False))
    return flag


def _bounds_problems(low: float | None, high: float | None) -> list[str]:
    if low is None and high is None:
        return ["give `min`, `max` or both"]
    if low is not None and high is not None and low > high:
        return [f"min ({low:g}) is above max ({high:g})"]
    return []


def _show(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
