"""Schema declarations without Spark: a DDL string or a list of ``{name, type, nullable}``.

Used by binding (the columns a ``validate:`` rule may name) and by the run (a source's
``read_schema`` as DDL, the quality gate's comparison). Types are compared by Spark at run time;
here only names and nullability need to be right.
"""

from __future__ import annotations

import re
from typing import Any

import attrs


@attrs.frozen
class SchemaColumn:
    name: str
    type: str
    nullable: bool = True


def split_ddl(ddl: str) -> list[SchemaColumn]:
    """``"id BIGINT NOT NULL, tags ARRAY<STRING>"`` → columns, without Spark (names only
    need to be right for ``etl validate``; types are compared by Spark at run time)."""
    opened = sum(ddl.count(c) for c in "<(") - sum(ddl.count(c) for c in ">)")
    if opened != 0:
        raise ValueError(f"unbalanced brackets in {ddl!r}: each `(` and `<` needs its `)` or `>`")
    columns = []
    for part in (p.strip() for p in _top_level(ddl) if p.strip()):
        match = re.match(r"^(`[^`]+`|\S+)\s+(.+?)(\s+NOT\s+NULL)?$", part, re.IGNORECASE | re.S)
        if not match:
            raise ValueError(f"cannot read column definition {part!r}; write `name TYPE`")
        problem = type_problem(match.group(2).strip())
        if problem:
            raise ValueError(f"column {match.group(1).strip('`')!r}: {problem}")
        columns.append(
            SchemaColumn(match.group(1).strip("`"), match.group(2).strip(), not match.group(3))
        )
    return columns


#: Spark SQL's type names (DDL), with the number of arguments in brackets each may take
SIMPLE_TYPES = {
    **dict.fromkeys(
        (
            *("BOOLEAN", "BYTE", "TINYINT", "SHORT", "SMALLINT", "INT", "INTEGER", "LONG"),
            *("BIGINT", "FLOAT", "REAL", "DOUBLE", "DATE", "TIMESTAMP", "TIMESTAMP_NTZ"),
            *("TIMESTAMP_LTZ", "STRING", "BINARY", "VOID", "VARIANT"),
        ),
        (0, 0),
    ),
    **dict.fromkeys(("DECIMAL", "DEC", "NUMERIC"), (0, 2)),
    **dict.fromkeys(("CHAR", "CHARACTER", "VARCHAR"), (1, 1)),
}
_TYPE = re.compile(r"^([A-Za-z_]+)\s*(?:\(([^()]*)\))?$")


def type_problem(text: str) -> str | None:
    """Why ``text`` is not a Spark SQL type (``None`` when it is one), without Spark."""
    text = re.sub(r"\s+COMMENT\s+'[^']*'\s*$", "", text.strip(), flags=re.IGNORECASE)
    outer = re.match(r"^(ARRAY|MAP|STRUCT)\s*<(.*)>$", text, re.IGNORECASE | re.S)
    if outer:
        kind, inner = outer.group(1).upper(), outer.group(2)
        parts = _top_level(inner)
        if kind == "ARRAY":
            return type_problem(inner) if len(parts) == 1 else f"ARRAY takes one type: {text}"
        if kind == "MAP":
            if len(parts) != 2:
                return f"MAP takes a key type and a value type: {text}"
            return type_problem(parts[0]) or type_problem(parts[1])
        for field in parts:
            named = re.match(
                r"^(`[^`]+`|[^\s:]+)\s*:?\s*(.+?)(\s+NOT\s+NULL)?$", field.strip(), re.I
            )
            if not named:
                return f"cannot read struct field {field.strip()!r}; write `name: TYPE`"
            problem = type_problem(named.group(2))
            if problem:
                return problem
        return None
    if re.match(r"^INTERVAL\b", text, re.IGNORECASE):
        return None
    simple = _TYPE.match(text)
    arity = SIMPLE_TYPES.get(simple.group(1).upper()) if simple else None
    if simple is None or arity is None:
        import difflib

        word = re.split(r"[\s(<]", text, maxsplit=1)[0].upper()
        close = difflib.get_close_matches(word, [*SIMPLE_TYPES, "ARRAY", "MAP", "STRUCT"], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{text!r} is not a Spark SQL type{hint}"
    args = [a for a in (simple.group(2) or "").split(",") if a.strip()]
    low, high = arity
    if not low <= len(args) <= high or not all(a.strip().isdigit() for a in args):
        return (
            f"{text!r}: {simple.group(1).upper()} takes {low} to {high} whole numbers in brackets"
        )
    return None


def _top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "<(" and 1) or (char in ">)" and -1) or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def schema_problem(schema: str | list[dict[str, Any]] | None) -> str | None:
    """Why a ``read_schema`` (DDL, or a list of ``{name, type, nullable}``) cannot be read."""
    try:
        if isinstance(schema, str):
            split_ddl(schema)
        for column in schema if isinstance(schema, list) else []:
            problem = isinstance(column, dict) and type_problem(str(column.get("type", "")))
            if problem:
                return f"column {column.get('name')!r}: {problem}"
    except ValueError as exc:
        return str(exc)
    return None


def schema_ddl(read_schema: str | list[dict[str, Any]] | None) -> str | None:
    """A ``read_schema`` as DDL: a DDL string as is, or a list of ``{name, type, nullable}``."""
    if read_schema is None or isinstance(read_schema, str):
        return read_schema
    return ", ".join(
        f"`{c['name']}` {c['type']}{'' if c.get('nullable', True) else ' NOT NULL'}"
        for c in read_schema
    )
