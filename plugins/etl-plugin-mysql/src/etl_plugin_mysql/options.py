"""Options of the ``mysql`` source and sink (attrs classes, structured strictly by the core)."""

from __future__ import annotations

from typing import Any

import attrs

from etl_core import one_of, positive
from etl_core.api import Secret


@attrs.frozen
class Connection:
    database: str
    host: str = "127.0.0.1"
    port: int = attrs.field(default=3306, validator=positive)
    #: extra PyMySQL connect arguments for control statements (e.g. ``connect_timeout``, ``ssl``)
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class MySQLSourceOptions:
    connection: Connection
    table: str | None = None
    query: str | None = None
    columns: list[str] = attrs.field(factory=list)
    where: str | None = None
    partition_column: str | None = None
    partitions: int = attrs.field(default=1, validator=positive)
    predicates: list[str] = attrs.field(factory=list)
    user: Secret | None = None
    password: Secret | None = None


@attrs.frozen
class MySQLSinkOptions:
    connection: Connection
    table: str
    #: create the target from the DataFrame's schema when it does not exist
    create_table: bool = False
    #: columns the target lacks: ``fail``, or ``add_columns`` (ALTER TABLE before publishing)
    schema_drift: str = attrs.field(default="fail", validator=one_of("fail", "add_columns"))
    user: Secret | None = None
    password: Secret | None = None
