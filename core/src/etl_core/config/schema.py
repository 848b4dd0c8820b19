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
    parts, depth, current = [], 0, ""
    for char in ddl:
        depth += (char in "<(" and 1) or (char in ">)" and -1) or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    columns = []
    for part in (p.strip() for p in parts if p.strip()):
        match = re.match(r"^(`[^`]+`|\S+)\s+(.+?)(\s+NOT\s+NULL)?$", part, re.IGNORECASE | re.S)
        if not match:
            raise ValueError(f"cannot read column definition {part!r}; write `name TYPE`")
        columns.append(
            SchemaColumn(match.group(1).strip("`"), match.group(2).strip(), not match.group(3))
        )
    return columns


def schema_ddl(read_schema: str | list[dict[str, Any]] | None) -> str | None:
    """A ``read_schema`` as DDL: a DDL string as is, or a list of ``{name, type, nullable}``."""
    if read_schema is None or isinstance(read_schema, str):
        return read_schema
    return ", ".join(
        f"`{c['name']}` {c['type']}{'' if c.get('nullable', True) else ' NOT NULL'}"
        for c in read_schema
    )
