"""The ``postgres`` extractor, loader and state store: control statements on the driver
(psycopg), rows on the executors (the ``etl_postgres`` data source, ADBC)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

import attrs

from etl_core import (
    Context,
    Extractor,
    LiveRuns,
    Loader,
    LoadError,
    PermanentError,
    Preflight,
    Rejected,
    RunLocked,
    Staged,
    StateStore,
    datasources,
    held_by_another_run,
)
from etl_core.relational import (
    LEDGER_TABLE,
    REJECT_ROWS,
    STREAM_LEDGER_TABLE,
    merge_rejecting,
    partition_bounds,
    run_key_of_staging,
    staging_table,
    stream_batch_is_new,
)
from etl_plugin_postgres.client import (
    ConnInfo,
    PgColumn,
    control,
    ident,
    literal,
    names,
    query_columns,
    split_table,
    table_columns,
)
from etl_plugin_postgres.options import (
    PostgresSinkOptions,
    PostgresSourceOptions,
    PostgresStateOptions,
)
from etl_plugin_postgres.types import pg_type_of_spark, read_plan, write_arrow_type

if TYPE_CHECKING:
    import psycopg
    from pyspark.sql import DataFrame

PARTITION_TYPES = ("int2", "int4", "int8", "date", "timestamp", "timestamptz")
INCREMENTAL_TYPES = (*PARTITION_TYPES, "numeric", "float4", "float8", "text", "varchar")


def _data_source_options(info: ConnInfo, plan: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {
        "connection": info.public_json(),
        "password": info.password or "",
        "plan": plan,
        "what": what,
    }


_CHECK_IT = "check `table` (schema.table) and `connection.database`"
_CREATE_IT = (
    "check `table` and `connection.database`, create the table, or set `create_table: true` "
    "on the sink (it creates the schema too)"
)


def _missing(table: str, info: ConnInfo, fix: str, what: str | None = None) -> PermanentError:
    head = f"{what}: " if what else ""
    return PermanentError(f"{head}table {table} does not exist at {info.where()}; {fix}")


class PostgresExtractor(Extractor):
    """Read a table or a query, in parallel partitions on the executors."""

    name = "postgres"
    Options = PostgresSourceOptions
    capabilities = frozenset({"batch", "partitioned_read", "incremental"})

    def check(
        self, options: PostgresSourceOptions, *, incremental: Mapping[str, Any] | None
    ) -> list[str]:
        if incremental is None:
            return []
        if set(incremental) != {"column"} or not isinstance(incremental.get("column"), str):
            return [
                f"`incremental: {dict(incremental)}`: postgres sources read incrementally by an "
                "increasing column; write `incremental: {column: updated_at}`"
            ]
        return []

    def preflight(self, ctx: Preflight, options: PostgresSourceOptions) -> None:
        """One connection; the table exists, or the query compiles."""
        info = ConnInfo.from_options(options)
        with control(info, "postgres", autocommit=True, attempts=1) as conn:
            if options.table is None:
                query_columns(conn, options.query or "")
            elif table_columns(conn, ident(*split_table(options.table))) is None:
                raise _missing(options.table, info, _CHECK_IT)

    def extract(self, ctx: Context, options: PostgresSourceOptions) -> DataFrame:
        from etl_plugin_postgres.datasource import PostgresDataSource

        info = ConnInfo.from_options(options)
        what = f"source {ctx.dataset!r} ({options.table or 'query'})"
        if options.table is not None:
            relation = ident(*split_table(options.table))
        else:
            relation = f"({options.query}) AS etl_q"
        with control(info, what, autocommit=True) as conn:
            if options.table is not None:
                columns = table_columns(conn, relation)
                if columns is None:
                    raise _missing(options.table, info, _CHECK_IT, what)
            else:
                columns = query_columns(conn, options.query or "")
            columns = self._selected(columns, options, what)
            by_name = {c.name: c for c in self._all(conn, relation, options)}
            conditions = [f"({options.where})"] if options.where else []
            conditions += self._incremental(ctx, conn, relation, by_name, conditions, what)
            predicates = self._predicates(conn, relation, by_name, conditions, options, what)
            plans = [read_plan(c) for c in columns]
            select = ", ".join(
                expr if expr == ident(c.name) else f"{expr} AS {ident(c.name)}"
                for (expr, _), c in zip(plans, columns, strict=True)
            )
            filters = " AND ".join(conditions) or "true"
            plan = {
                "select": f"SELECT {select} FROM {relation}",  # noqa: S608 - identifiers quoted
                "predicates": [f"({filters}) AND ({p})" for p in predicates],
            }
            for predicate in plan["predicates"]:  # SQL errors surface here, not in a task
                conn.execute(f"{plan['select']} WHERE {predicate} LIMIT 0")
        ddl = ", ".join(f"`{c.name}` {t}" for c, (_, t) in zip(columns, plans, strict=True))
        return datasources.read(
            ctx.spark, PostgresDataSource, ddl, _data_source_options(info, plan, what)
        )

    @staticmethod
    def _all(conn: psycopg.Connection, relation: str, options: Any) -> list[PgColumn]:
        if options.table is not None:
            return table_columns(conn, relation) or []
        return query_columns(conn, options.query or "")

    @staticmethod
    def _selected(
        columns: list[PgColumn], options: PostgresSourceOptions, what: str
    ) -> list[PgColumn]:
        if not options.columns:
            return columns
        by_name = {c.name: c for c in columns}
        unknown = [c for c in options.columns if c not in by_name]
        if unknown:
            raise PermanentError(
                f"{what}: no column(s) {', '.join(unknown)}; known: {', '.join(by_name)}"
            )
        return [by_name[c] for c in options.columns]

    @staticmethod
    def _column(by_name: Mapping[str, PgColumn], name: str, what: str, role: str) -> PgColumn:
        if name not in by_name:
            raise PermanentError(
                f"{what}: {role} {name!r} is not a column; known: {', '.join(by_name)}"
            )
        return by_name[name]

    def _incremental(
        self,
        ctx: Context,
        conn: psycopg.Connection,
        relation: str,
        by_name: Mapping[str, PgColumn],
        conditions: list[str],
        what: str,
    ) -> list[str]:
        """Rows past the bookmark up to the current maximum, read once here: rows committed
        while the run goes are left for the next run."""
        if ctx.incremental is None:
            return []
        column = self._column(by_name, ctx.incremental["column"], what, "incremental column")
        if column.typname not in INCREMENTAL_TYPES:
            raise PermanentError(
                f"{what}: incremental column {column.name!r} is {column.formatted}; use an "
                "increasing integer, numeric, date or timestamp column"
            )
        quoted = ident(column.name)
        added = []
        if ctx.bookmark is not None:
            added.append(f"{quoted} > {literal(conn, str(ctx.bookmark))}::{column.formatted}")
        where = " AND ".join([*conditions, *added]) or "true"
        (high,) = conn.execute(f"SELECT max({quoted}) FROM {relation} WHERE {where}").fetchone()  # type: ignore[misc]  # noqa: S608
        if high is None:  # nothing new: known to be empty (a count could be optimised away)
            ctx.report_rows(0)
            return [*added, "false"]
        ctx.propose_bookmark(high if isinstance(high, int) else str(high))
        return [*added, f"{quoted} <= {literal(conn, high)}"]

    def _predicates(
        self,
        conn: psycopg.Connection,
        relation: str,
        by_name: Mapping[str, PgColumn],
        conditions: list[str],
        options: PostgresSourceOptions,
        what: str,
    ) -> list[str]:
        if options.predicates:
            return list(options.predicates)
        if options.partition_column is None:
            return ["true"]
        column = self._column(by_name, options.partition_column, what, "partition_column")
        if column.typname not in PARTITION_TYPES:
            raise PermanentError(
                f"{what}: partition_column {column.name!r} is {column.formatted}; use an "
                "integer, date or timestamp column, or give explicit `predicates`"
            )
        quoted = ident(column.name)
        where = " AND ".join(conditions) or "true"
        row = conn.execute(
            f"SELECT min({quoted}), max({quoted}) FROM {relation} WHERE {where}"  # noqa: S608
        ).fetchone()
        low, high = row if row else (None, None)
        if low is None:
            return ["true"]
        predicates = []
        for i, (start, stop) in enumerate(partition_bounds(low, high, options.partitions)):
            bound = f"{quoted} >= {literal(conn, start)} AND {quoted} < {literal(conn, stop)}"
            predicates.append(f"{bound} OR {quoted} IS NULL" if i == 0 else bound)
        return predicates


#: target types a text staging column reaches by assignment (a value too long fails)
STRING_TYPES = ("text", "varchar", "bpchar", "name")


def _nested(data_type: Any) -> bool:
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(data_type, ArrayType):
        return _nested(data_type.elementType)
    return isinstance(data_type, (StructType, MapType))


def _json_for_nested(df: DataFrame) -> DataFrame:
    """Structs, maps and arrays holding them travel as JSON text (stored as jsonb)."""
    from pyspark.sql import functions as F

    nested = {
        f.name: F.to_json(F.col(f"`{f.name}`")) for f in df.schema.fields if _nested(f.dataType)
    }
    return df.withColumns(nested) if nested else df


_CREATED = re.compile(r"created_epoch=(\d+(?:\.\d+)?)")


#: memory for the MERGE's join or sort, per publish (one transaction; the default 4MB spills
#: a 1M-row hash join to disk in 8 batches)
MERGE_WORK_MEM = "256MB"


def _key_index(conn: psycopg.Connection, target: str, key: Sequence[str]) -> str | None:
    """The name of the target's unique index on exactly the upsert key (not partial, not on
    expressions, NULLs distinct), when the server has MERGE (15+); else ``None``: the upsert
    stays ``INSERT … ON CONFLICT``, which also names a missing unique index as the problem."""
    if conn.info.server_version < 150000:
        return None
    row = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass "
        "AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
        "AND NOT i.indnullsnotdistinct AND (SELECT array_agg(a.attname::text ORDER BY a.attname)"
        " FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = %s "
        "AND i.indnkeyatts = %s LIMIT 1",
        [target, sorted(key), len(key)],
    ).fetchone()
    return str(row[0]) if row else None


def _matched(
    conn: psycopg.Connection,
    target: str,
    stg: str,
    staged: list[PgColumn],
    existing: list[PgColumn],
    key: Sequence[str],
) -> int:
    """How many staged rows have a key already in ``target`` (one semi-join on the key)."""
    on = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key)
    select = _select_staged(stg, staged, existing)
    (count,) = conn.execute(
        f"SELECT count(*) FROM ({select}) AS s WHERE EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {target} AS t WHERE {on})"
    ).fetchone()  # type: ignore[misc]
    return int(count)


def _select_staged(
    source: str, staged: list[PgColumn], existing: list[PgColumn], where: str = ""
) -> str:
    """The staged rows as the target's types: columns landed as text are cast; strings go by
    assignment (too long fails, never truncates)."""
    types = {c.name: c for c in existing}
    select = ", ".join(
        f"{ident(c.name)}::{types[c.name].formatted} AS {ident(c.name)}"
        if c.typname == "text" and types[c.name].typname not in STRING_TYPES
        else ident(c.name)
        for c in staged
    )
    return f"SELECT {select} FROM {source}{where}"  # noqa: S608


def _merge_into(
    stg: str,
    target: str,
    staged: list[PgColumn],
    existing: list[PgColumn],
    key: Sequence[str],
) -> str:
    """The upsert as one ``MERGE``: the same rows and casts as ``_merge_statement``."""
    select = _select_staged(stg, staged, existing)
    columns = [c.name for c in staged]
    on = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key)
    updates = [c for c in columns if c not in key]
    statement = f"MERGE INTO {target} AS t USING ({select}) AS s ON {on}"
    if updates:
        assign = ", ".join(f"{ident(c)} = s.{ident(c)}" for c in updates)
        statement += f" WHEN MATCHED THEN UPDATE SET {assign}"
    values = ", ".join(f"s.{ident(c)}" for c in columns)
    insert = f" WHEN NOT MATCHED THEN INSERT ({names(columns)}) VALUES ({values})"  # noqa: S608
    return statement + insert


class PostgresLoader(Loader):
    """Stage into ``etl_stg_<run_key>_<n>`` beside the target; publish with one transaction."""

    name = "postgres"
    Options = PostgresSinkOptions
    capabilities = frozenset({"batch", "streaming", "upsert", "exactly_once"})
    modes: ClassVar[tuple[str, ...]] = ("error", "append", "overwrite", "upsert")

    @staticmethod
    def _names(ctx: Context, options: PostgresSinkOptions) -> tuple[str, str, str]:
        schema, table = split_table(options.table)
        return schema, ident(schema, table), staging_table(ctx.run_key, ctx.sink_index or 0)

    @staticmethod
    def _what(ctx: Context, options: PostgresSinkOptions) -> str:
        return f"sink {ctx.dataset!r} ({options.table})"

    def preflight(self, ctx: Preflight, options: PostgresSinkOptions) -> None:
        """One connection; the target exists unless the sink creates it."""
        info = ConnInfo.from_options(options)
        with control(info, "postgres", autocommit=True, attempts=1) as conn:
            exists = table_columns(conn, ident(*split_table(options.table))) is not None
            if not exists and not options.create_table:
                raise _missing(options.table, info, _CREATE_IT)

    def stage(self, ctx: Context, df: DataFrame, options: PostgresSinkOptions) -> Staged:
        from etl_plugin_postgres.datasource import PostgresDataSource, arrow_code

        info, what = ConnInfo.from_options(options), self._what(ctx, options)
        schema, target, staging = self._names(ctx, options)
        stg = ident(schema, staging)
        fields = {f.name: f for f in df.schema.fields}
        missing_keys = [k for k in ctx.key if k not in fields]
        if missing_keys:
            raise PermanentError(
                f"{what}: key column(s) {', '.join(missing_keys)} not in the input"
            )
        with control(info, what) as conn:
            existing = table_columns(conn, target)
            conn.execute(f"DROP TABLE IF EXISTS {stg}")
            if existing is None:
                if not options.create_table:
                    raise _missing(options.table, info, _CREATE_IT, what)
                # the staging table lives in the target's schema: create that first
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
                columns = ", ".join(
                    f"{ident(f.name)} {pg_type_of_spark(f.dataType)}" for f in df.schema.fields
                )
                conn.execute(f"CREATE UNLOGGED TABLE {stg} ({columns})")
                self._land_as_text(conn, schema, staging, stg, remember=True)
            else:
                if ctx.mode == "error":
                    self._refuse_rows(conn, target, options.table, what)
                self._drift(conn, target, existing, df, options, what)
                # on_reject: dead_letter stages without the target's constraints; the rows
                # they refuse are isolated at publish, with the database's reason
                rejecting = ctx.on_reject == "dead_letter"
                constraints = "" if rejecting else " INCLUDING CONSTRAINTS"
                conn.execute(
                    f"CREATE UNLOGGED TABLE {stg} (LIKE {target} INCLUDING DEFAULTS{constraints})"
                )
                for column in existing:
                    if column.name not in fields:
                        conn.execute(f"ALTER TABLE {stg} DROP COLUMN {ident(column.name)} CASCADE")
                    elif rejecting:
                        self._relax(conn, stg, column)
                self._land_as_text(conn, schema, staging, stg)
            note = f"etl staging of {ctx.pipeline}/{ctx.dataset}: created_epoch={time.time():.0f}"
            conn.execute(f"COMMENT ON TABLE {stg} IS {literal(conn, note)}")
            staged_columns = table_columns(conn, stg) or []
        plan = {
            "schema": schema,
            "table": staging,
            "types": {c.name: arrow_code(write_arrow_type(c)) for c in staged_columns},
        }
        datasources.write(
            _json_for_nested(df), PostgresDataSource, _data_source_options(info, plan, what)
        )
        return Staged(
            ctx.dataset, ctx.sink_index or 0, ctx.run_key, {"staging": f"{schema}.{staging}"}
        )

    @staticmethod
    def _refuse_rows(conn: psycopg.Connection, target: str, table: str, what: str) -> None:
        """``mode: error``: the target must hold no rows."""
        (has_rows,) = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {target})").fetchone()  # type: ignore[misc]  # noqa: S608
        if has_rows:
            raise LoadError(
                f"{what}: {table} already holds rows and the sink's mode is `error`; "
                "set `mode: append`, `overwrite` or `upsert`, or empty the table"
            )

    @staticmethod
    def _drift(
        conn: psycopg.Connection,
        target: str,
        existing: list[PgColumn],
        df: DataFrame,
        options: PostgresSinkOptions,
        what: str,
    ) -> None:
        known = {c.name for c in existing}
        new = [f for f in df.schema.fields if f.name not in known]
        if not new:
            return
        if options.schema_drift == "fail":
            raise PermanentError(
                f"{what}: the input has column(s) {', '.join(f.name for f in new)} that "
                f"{options.table} lacks; add them, drop them from the input, or set "
                "`schema_drift: add_columns`"
            )
        for field in new:
            conn.execute(
                f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {ident(field.name)} "
                f"{pg_type_of_spark(field.dataType)}"
            )

    @staticmethod
    def _relax(conn: psycopg.Connection, stg: str, column: PgColumn) -> None:
        """A staging column that accepts what the target may refuse (``on_reject:
        dead_letter``): no NOT NULL, and bounded strings as text (the merge's assignment cast
        refuses a value that is too long, row by row)."""
        quoted = ident(column.name)
        conn.execute(f"ALTER TABLE {stg} ALTER COLUMN {quoted} DROP NOT NULL")
        if column.typname in ("varchar", "bpchar"):
            conn.execute(f"ALTER TABLE {stg} ALTER COLUMN {quoted} TYPE text")

    @staticmethod
    def _land_as_text(
        conn: psycopg.Connection, schema: str, staging: str, stg: str, *, remember: bool = False
    ) -> None:
        """Columns Arrow cannot COPY into (uuid, jsonb, time, interval, ...) land as text and
        are cast to their type by the publish; CHECKs on them are left to the target.
        ``remember``: the staging shapes a target still to create, so the column's comment
        keeps its type (``etl_type=jsonb``) for the publish."""
        for column in table_columns(conn, stg) or []:
            if write_arrow_type(column) is not None:
                continue
            if remember:
                note = literal(conn, f"etl_type={column.formatted}")
                conn.execute(f"COMMENT ON COLUMN {stg}.{ident(column.name)} IS {note}")
            for (constraint,) in conn.execute(
                "SELECT conname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = "
                "c.conrelid AND a.attnum = ANY(c.conkey) WHERE c.conrelid = %s::regclass "
                "AND c.contype = 'c' AND a.attname = %s",
                [stg, column.name],
            ).fetchall():
                conn.execute(f"ALTER TABLE {stg} DROP CONSTRAINT IF EXISTS {ident(constraint)}")
            quoted = ident(column.name)
            conn.execute(f"ALTER TABLE {stg} ALTER COLUMN {quoted} DROP DEFAULT")
            conn.execute(f"ALTER TABLE {stg} ALTER COLUMN {quoted} TYPE text USING {quoted}::text")

    def publish(self, ctx: Context, staged: Staged, options: PostgresSinkOptions) -> list[Rejected]:
        info, what = ConnInfo.from_options(options), self._what(ctx, options)
        schema, target, staging = self._names(ctx, options)
        stg, ledger = ident(schema, staging), ident(schema, LEDGER_TABLE)
        with control(info, what) as conn:
            if ctx.micro_batch is None:
                claimed = self._claim_run(conn, ledger, ctx)
            else:
                claimed = self._claim_batch(conn, ident(schema, STREAM_LEDGER_TABLE), ctx, what)
            if not claimed:  # this run (or micro-batch) already published this sink
                conn.execute(f"DROP TABLE IF EXISTS {stg}")
                return []
            staged_columns = table_columns(conn, stg)
            if staged_columns is None:
                raise LoadError(
                    f"{what}: staging table {schema}.{staging} is gone (cleaned as stale?); "
                    f"rerun with --run-id {ctx.run_id}"
                )
            existing = table_columns(conn, target)
            if existing is None:
                conn.execute(f"CREATE TABLE {target} (LIKE {stg} INCLUDING DEFAULTS)")
                for column, kind in conn.execute(
                    "SELECT attname, substr(col_description(attrelid, attnum), 10) FROM "
                    "pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND "
                    "col_description(attrelid, attnum) LIKE 'etl_type=%%'",
                    [stg],
                ).fetchall():
                    quoted = ident(column)
                    conn.execute(
                        f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE {kind} "
                        f"USING {quoted}::{kind}"
                    )
                if ctx.key:
                    conn.execute(f"ALTER TABLE {target} ADD PRIMARY KEY ({names(ctx.key)})")
                existing = table_columns(conn, target) or staged_columns
            if ctx.on_reject == "dead_letter":
                rejected = self._merge_rejecting(
                    conn, target, stg, staged_columns, existing, ctx, options, what
                )
            else:
                self._merge(conn, target, stg, staged_columns, existing, ctx, options, what)
                rejected = []
            conn.execute(f"DROP TABLE {stg}")
        return rejected

    @staticmethod
    def _claim_run(conn: Any, ledger: str, ctx: Context) -> bool:
        """The run's ledger row, in the publish transaction: False if it is there already."""
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} (pipeline text NOT NULL, run_id text NOT "
            "NULL, sink text NOT NULL, published_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, run_id, sink))"
        )
        return bool(
            conn.execute(
                f"INSERT INTO {ledger} (pipeline, run_id, sink) VALUES (%s, %s, %s) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                [ctx.pipeline, ctx.run_id, ctx.dataset],
            ).rowcount
        )

    @staticmethod
    def _claim_batch(conn: Any, ledger: str, ctx: Context, what: str) -> bool:
        """The sink's stream ledger row moved to this micro-batch, in the publish transaction
        (locked until it commits): False if the batch was published already."""
        assert ctx.micro_batch is not None
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} (pipeline text NOT NULL, sink text NOT NULL, "
            "query_id text NOT NULL, batch_id bigint NOT NULL, published_at timestamptz NOT "
            "NULL DEFAULT now(), PRIMARY KEY (pipeline, sink))"
        )
        key = [ctx.pipeline, ctx.dataset]
        query_id, batch_id = ctx.micro_batch
        conn.execute(
            f"INSERT INTO {ledger} (pipeline, sink, query_id, batch_id) VALUES "  # noqa: S608
            "(%s, %s, %s, -1) ON CONFLICT DO NOTHING",
            [*key, query_id],
        )
        stored = conn.execute(
            f"SELECT query_id, batch_id FROM {ledger} WHERE pipeline = %s AND sink = %s "  # noqa: S608
            "FOR UPDATE",
            key,
        ).fetchone()
        if not stream_batch_is_new(stored, ctx.micro_batch, start_over=ctx.start_over, what=what):
            return False
        conn.execute(
            f"UPDATE {ledger} SET query_id = %s, batch_id = %s, published_at = now() "  # noqa: S608
            "WHERE pipeline = %s AND sink = %s",
            [query_id, batch_id, *key],
        )
        return True

    @staticmethod
    def _merge_statement(
        source: str,
        target: str,
        staged: list[PgColumn],
        existing: list[PgColumn],
        upsert_key: Sequence[str] = (),
        where: str = "",
    ) -> str:
        """The merge from staging: a plain insert, or with ``upsert_key`` an upsert on it."""
        columns = [c.name for c in staged]
        select = _select_staged(source, staged, existing, where)
        statement = f"INSERT INTO {target} ({names(columns)}) {select}"
        if upsert_key:
            updates = [c for c in columns if c not in upsert_key]
            action = (
                "DO UPDATE SET " + ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in updates)
                if updates
                else "DO NOTHING"
            )
            statement += f" ON CONFLICT ({names(upsert_key)}) {action}"
        return statement

    @staticmethod
    def _before_merge(
        conn: psycopg.Connection, target: str, mode: str | None, table: str, what: str
    ) -> None:
        if mode == "error":
            PostgresLoader._refuse_rows(conn, target, table, what)
        if mode == "overwrite":
            conn.execute(f"DELETE FROM {target}")  # noqa: S608

    @staticmethod
    def _duplicate_keys(key: Sequence[str], what: str) -> LoadError:
        return LoadError(
            f"{what}: the input holds several rows with the same key "
            f"({', '.join(key)}); upsert refuses to pick one. Deduplicate first, "
            "e.g. a `deduplicate` transform on the key ordered by a timestamp"
        )

    @staticmethod
    def _merge(
        conn: psycopg.Connection,
        target: str,
        stg: str,
        staged: list[PgColumn],
        existing: list[PgColumn],
        ctx: Context,
        options: PostgresSinkOptions,
        what: str,
    ) -> None:
        import psycopg

        PostgresLoader._before_merge(conn, target, ctx.mode, options.table, what)
        upsert_key = ctx.key  # the core sets a key only for the mode that needs one: upsert
        key_index = _key_index(conn, target, upsert_key) if upsert_key else None
        if key_index is None:
            statement = PostgresLoader._merge_statement(stg, target, staged, existing, upsert_key)
        else:  # the upsert as MERGE: a join instead of one speculative insert per row
            statement = _merge_into(stg, target, staged, existing, upsert_key)
            conn.execute(f"ANALYZE {stg}")  # the planner sizes the join by the staged rows
            conn.execute(f"SET LOCAL work_mem = {literal(conn, MERGE_WORK_MEM)}")
        # an upsert says how many of its rows had a key already in the target: counted in the
        # publish transaction, before the merge changes the answer
        matched = _matched(conn, target, stg, staged, existing, upsert_key) if upsert_key else 0
        try:
            merged = conn.execute(statement).rowcount
        except psycopg.errors.CardinalityViolation:
            raise PostgresLoader._duplicate_keys(upsert_key, what) from None
        except psycopg.errors.UniqueViolation as exc:
            # MERGE inserts two new rows with one key (ON CONFLICT would have refused both as
            # a cardinality violation): the same refusal, named the same way
            if key_index is None or exc.diag.constraint_name != key_index:
                raise
            raise PostgresLoader._duplicate_keys(upsert_key, what) from None
        if upsert_key:  # rows with a matched key count in `merged` only when they update
            updating = any(c.name not in upsert_key for c in staged)
            ctx.report_merged(merged - matched if updating else merged, matched)

    @staticmethod
    def _merge_rejecting(
        conn: psycopg.Connection,
        target: str,
        stg: str,
        staged: list[PgColumn],
        existing: list[PgColumn],
        ctx: Context,
        options: PostgresSinkOptions,
        what: str,
    ) -> list[Rejected]:
        """``on_reject: dead_letter`` (DESIGN §4 step 5) through
        :func:`~etl_core.relational.merge_rejecting`: a row is refused by a data exception or a
        constraint (SQLSTATE classes 22 and 23). Returns the refused rows, each with the
        database's reason; the rest stay merged in this (still open) transaction."""
        import psycopg

        PostgresLoader._before_merge(conn, target, ctx.mode, options.table, what)
        columns = names([c.name for c in staged])
        upsert_key = ctx.key  # the core sets a key only for the mode that needs one: upsert

        def merge(source: str, where: str) -> None:
            statement = PostgresLoader._merge_statement(
                source, target, staged, existing, upsert_key, where
            )
            try:
                conn.execute(statement)
            except psycopg.errors.CardinalityViolation:
                raise PostgresLoader._duplicate_keys(upsert_key, what) from None

        def number() -> int:
            conn.execute(
                f"CREATE TEMP TABLE {REJECT_ROWS} ON COMMIT DROP AS SELECT row_number() OVER () "  # noqa: S608
                f"AS etl_row, {columns} FROM {stg}"
            )
            conn.execute(f"CREATE INDEX ON {REJECT_ROWS} (etl_row)")
            (count,) = conn.execute(f"SELECT count(*) FROM {REJECT_ROWS}").fetchone()  # type: ignore[misc]  # noqa: S608
            return int(count)

        def is_reject(exc: Exception) -> TypeGuard[psycopg.Error]:
            return isinstance(exc, psycopg.Error) and (exc.sqlstate or "")[:2] in ("22", "23")

        offenders = merge_rejecting(conn.execute, merge, stg, number=number, is_reject=is_reject)
        rejected: list[Rejected] = []
        for row_number, error in offenders:
            (row,) = conn.execute(
                f"SELECT row_to_json(r)::text FROM (SELECT {columns} FROM {REJECT_ROWS} "  # noqa: S608
                "WHERE etl_row = %s) r",
                [row_number],
            ).fetchone()  # type: ignore[misc]
            diag = error.diag
            message = diag.message_primary or str(error).splitlines()[0]
            rule = diag.constraint_name or f"sqlstate {error.sqlstate}"
            rejected.append(Rejected(row=row, message=message, rule=rule))
        conn.execute(f"DROP TABLE IF EXISTS {REJECT_ROWS}")
        return rejected

    @classmethod
    def dead_letter_options(
        cls, options: PostgresSinkOptions, *, pipeline: str, run_key: str, stage: str
    ) -> PostgresSinkOptions:
        """One table for every stage's dead letters, created on first use (``errors`` as
        jsonb), appended to, new columns added."""
        return attrs.evolve(options, create_table=True, schema_drift="add_columns")

    def discard(self, ctx: Context, staged: Staged, options: PostgresSinkOptions) -> None:
        info, what = ConnInfo.from_options(options), self._what(ctx, options)
        schema, _, staging = self._names(ctx, options)
        with control(info, what, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {ident(schema, staging)}")

    def clean_stale(
        self, ctx: Context, options: PostgresSinkOptions, live_runs: LiveRuns
    ) -> list[str]:
        info, what = ConnInfo.from_options(options), self._what(ctx, options)
        schema, _, _ = self._names(ctx, options)
        dropped = []
        with control(info, what, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                "AND c.relkind = 'r' AND c.relname LIKE 'etl\\_stg\\_%%'",
                [schema],
            ).fetchall()
            for table, comment in rows:
                key = run_key_of_staging(table)
                found = _CREATED.search(comment or "")
                created = float(found.group(1)) if found else 0.0
                if key is not None and live_runs.stale(key, created):
                    conn.execute(f"DROP TABLE IF EXISTS {ident(schema, table)}")
                    dropped.append(f"{schema}.{table}")
        return dropped


# --- state store: incremental bookmarks in a table (DESIGN §4), one row per pipeline and
# source, so runs on any machine share them and a save is one transaction


class PostgresStateStore(StateStore):
    """Bookmarks in ``table (pipeline, source, bookmark jsonb, updated_at)``; ``save`` upserts
    the new marks over the old ones in one transaction."""

    name = "postgres"
    Options = PostgresStateOptions

    @staticmethod
    def _table(options: PostgresStateOptions) -> str:
        return ident(*split_table(options.table))

    @staticmethod
    def _create(conn: Any, table: str) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (pipeline text NOT NULL, source text NOT NULL, "
            "bookmark jsonb, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, source))"
        )

    @contextmanager
    def hold(self, base_dir: Path, pipeline: str, options: PostgresStateOptions) -> Iterator[None]:
        """A session advisory lock on (table, pipeline) for the run, so runs on every machine
        that shares the table take turns; the server drops it with the connection, also when
        the run is killed."""
        what = f"state store ({options.table})"
        with control(ConnInfo.from_options(options), what, autocommit=True) as conn:
            held = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", [options.table, pipeline]
            ).fetchone()
            if not (held and held[0]):
                where = f"advisory lock on {options.table}"
                raise RunLocked(held_by_another_run(pipeline, where))
            yield  # closing the connection releases the lock

    def load(self, base_dir: Path, pipeline: str, options: PostgresStateOptions) -> dict[str, Any]:
        table = self._table(options)
        what = f"state store ({options.table})"
        with control(ConnInfo.from_options(options), what, autocommit=True) as conn:
            self._create(conn, table)
            rows = conn.execute(
                f"SELECT source, bookmark FROM {table} WHERE pipeline = %s",  # noqa: S608
                [pipeline],
            ).fetchall()
        return {source: bookmark for source, bookmark in rows}

    def save(
        self,
        base_dir: Path,
        pipeline: str,
        bookmarks: Mapping[str, Any],
        options: PostgresStateOptions,
    ) -> None:
        table = self._table(options)
        what = f"state store ({options.table})"
        with control(ConnInfo.from_options(options), what) as conn:
            self._create(conn, table)
            for source, bookmark in bookmarks.items():
                conn.execute(
                    f"INSERT INTO {table} (pipeline, source, bookmark) VALUES (%s, %s, %s) "  # noqa: S608
                    "ON CONFLICT (pipeline, source) DO UPDATE SET bookmark = EXCLUDED.bookmark, "
                    "updated_at = now()",
                    [pipeline, source, json.dumps(bookmark, default=str)],
                )
