"""Problems with transform options, as the messages ``check`` returns: names, column lists,
expressions, sort keys and named aggregations."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from etl_core.builtins.transforms.columns import SortKey
from etl_core.options import ValueProblem

#: names the transforms give to new columns: plain identifiers, easy to use in SQL
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def name_problems(names: Iterable[str], key: str) -> list[str]:
    return [
        f"`{key}.{name}`: {name!r} is not a valid column name; use letters, digits and "
        "underscores, not starting with a digit"
        for name in names
        if not _OUTPUT_NAME.match(name)
    ]


def column_list_problems(columns: Sequence[str], key: str) -> list[str]:
    problems = [f"`{key}[{i}]` is empty" for i, column in enumerate(columns) if not column.strip()]
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            problems.append(f"`{key}` lists {column!r} twice")
        seen.add(column)
    return problems


def expression_problems(expressions: Mapping[str, str], key: str) -> list[str]:
    return [f"`{key}.{name}` is empty" for name, text in expressions.items() if not text.strip()]


def sort_problems(order_by: Sequence[str], key: str = "order_by") -> list[str]:
    problems = []
    for i, text in enumerate(order_by):
        try:
            SortKey.parse(text)
        except ValueProblem as exc:
            problems.append(f"`{key}[{i}]`: {exc}")
    return problems


def aggregation_problems(group_by: Sequence[str], aggregations: Mapping[str, str]) -> list[str]:
    """Problems with ``group_by`` and named ``aggregations``, as ``aggregate`` and time windows
    take them."""
    problems = column_list_problems(group_by, "group_by")
    if not aggregations:
        problems.append(
            "`aggregations` is empty: name at least one output, e.g. "
            '`aggregations: {total: "sum(amount)"}`'
        )
    problems += name_problems(aggregations, "aggregations")
    problems += expression_problems(aggregations, "aggregations")
    clashes = sorted({c.lower() for c in group_by} & {n.lower() for n in aggregations})
    problems += [f"`aggregations.{name}` has the name of a `group_by` column" for name in clashes]
    return problems


def watermark_problems(
    what: str, column: str | None, watermark: str | None, output_mode: str
) -> list[str]:
    """A stateful transform in a stream, in append mode, emits a group once the watermark has
    passed it: it needs a watermark on ``column`` (the event time it groups by; ``None``: any
    event-time column of its input)."""
    if output_mode != "append":
        return []
    fix = (
        "add `watermark: {column: <event time>, delay: 10m}` to the streamed source (or the "
        "transform that makes the column), or set `output_mode: update`"
    )
    if watermark is None:
        return [f"in a stream in append mode, {what} needs a watermark: {fix}"]
    if column is not None and column != watermark:
        return [
            f"in a stream in append mode, {what} must use the watermark's column {watermark!r} "
            f"(it uses {column!r}): Spark could never tell when a group is complete"
        ]
    return []
