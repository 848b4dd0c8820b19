"""Options of the ``postgres`` source, sink and state store (attrs classes, structured strictly
by the core)."""

from __future__ import annotations

from typing import Any

import attrs

from etl_core import Secret, one_of, positive

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@attrs.frozen
class Connection:
    host: str = "127.0.0.1"
    port: int = attrs.field(default=5432, validator=positive)
    database: str = "postgres"
    sslmode: str = attrs.field(default="prefer", validator=one_of(*SSL_MODES))
    #: libpq ``options``, e.g. ``-c statement_timeout=60000``
    options: str | None = None
    #: seconds to wait for a connection
    connect_timeout: int = attrs.field(default=10, validator=positive)


def _partition_form(instance: Any, _: attrs.Attribute[Any], __: Any) -> None:
    from etl_core.options import ValueProblem

    if instance.table is None and instance.query is None:
        raise ValueProblem("give `table` (schema.table) or `query`", "table")
    if instance.table is not None and instance.query is not None:
        raise ValueProblem("give either `table` or `query`, not both", "query")
    if instance.partition_column is not None and instance.predicates:
        raise ValueProblem("give either `partition_column` or `predicates`, not both", "predicates")


@attrs.frozen
class PostgresSourceOptions:
    connection: Connection = attrs.field(factory=Connection)
    #: filled from a ``credentials:`` entry (fields ``user`` and ``password``) or inline
    #: ``{secret: ...}`` references, never written in the file
    user: Secret | None = None
    password: Secret | None = None
    table: str | None = None
    query: str | None = None
    columns: list[str] | None = None
    where: str | None = None
    #: an integer, date or timestamp column to split the read on
    partition_column: str | None = None
    partitions: int = attrs.field(default=4, validator=positive)
    #: explicit WHERE conditions, one partition each (together they must cover every row once)
    predicates: list[str] = attrs.field(factory=list, validator=_partition_form)


@attrs.frozen
class PostgresSinkOptions:
    table: str
    connection: Connection = attrs.field(factory=Connection)
    user: Secret | None = None
    password: Secret | None = None
    #: create the target from the DataFrame's schema when it does not exist
    create_table: bool = False
    #: columns of the input missing from the target: `fail`, or `add_columns` (nullable)
    schema_drift: str = attrs.field(default="fail", validator=one_of("fail", "add_columns"))


@attrs.frozen
class PostgresStateOptions:
    connection: Connection = attrs.field(factory=Connection)
    #: filled from the state block's ``credentials:`` entry (fields ``user`` and ``password``)
    user: Secret | None = None
    password: Secret | None = None
    #: the bookmarks table (schema.table), created on first use
    table: str = "public.etl_state"
