"""The ``mysql`` extractor and loader (MySQL and MariaDB).

The driver only plans: it reads column types, partition bounds and the incremental high-water
mark with PyMySQL, and runs the sink's DDL and publish transaction. Rows move on the executors
through the ``etl_mysql`` Spark data source (:mod:`etl_plugin_mysql.datasource`, imported when a
run starts, so ``etl plugins`` stays fast).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

from etl_core import datasources
from etl_core.api import (
    Context,
    Extractor,
    LiveRuns,
    Loader,
    LoadError,
    PermanentError,
    Preflight,
    Rejected,
    Secret,
    Staged,
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
from etl_plugin_mysql.client import Endpoint, literal, mysql_code, quote_name, session
from etl_plugin_mysql.options import Connection, MySQLSinkOptions, MySQLSourceOptions
from etl_plugin_mysql.types import column_ddl, read_column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

TASKS_SUFFIX = "_tasks"

#: MySQL/MariaDB errors for a row the target refuses (``on_reject: dead_letter`` isolates it):
#: NULL in a NOT NULL column, duplicate key, out of range, truncated, incorrect value, CHECK
#: (MySQL 3819, MariaDB 4025), foreign keys, too long, bad date, no default
REJECT_CODES = frozenset(
    {1048, 1062, 1264, 1265, 1366, 3819, 4025, 1451, 1452, 1216, 1217, 1406, 1292, 1364, 1690}
)


def _endpoint(connection: Connection, user: Secret | None, password: Secret | None) -> Endpoint:
    return Endpoint(
        host=connection.host,
        port=connection.port,
        database=connection.database,
        user=user.reveal() if user is not None else None,
        password=password.reveal() if password is not None else None,
        options=connection.options,
    )


# --- extractor ----------------------------------------------------------------------------


class MySQLExtractor(Extractor):
    """Read a table or a query, in parallel by key ranges (``partition_column`` +
    ``partitions``) or by explicit ``predicates``; incrementally with
    ``incremental: {column: NAME}``."""

    name = "mysql"
    Options = MySQLSourceOptions
    capabilities = frozenset({"batch", "partitioned_read", "incremental"})

    def check(
        self, options: MySQLSourceOptions, *, incremental: Mapping[str, Any] | None
    ) -> list[str]:
        problems = []
        if (options.table is None) == (options.query is None):
            problems.append("give exactly one of `table` and `query`")
        if options.partition_column and options.predicates:
            problems.append("give `partition_column` or `predicates`, not both")
        if options.partitions > 1 and not options.partition_column:
            problems.append("`partitions` needs `partition_column` (an integer, date or timestamp)")
        if incremental is not None and (
            set(incremental) != {"column"} or not isinstance(incremental.get("column"), str)
        ):
            problems.append(
                f"`incremental: {dict(incremental)}`: mysql sources read incrementally by a "
                "column; write `incremental: {column: updated_at}`"
            )
        return problems

    def preflight(self, ctx: Preflight, options: MySQLSourceOptions) -> None:
        """One connection; the table exists."""
        _preflight(options, create_table=None)

    def extract(self, ctx: Context, options: MySQLSourceOptions) -> DataFrame:
        problems = self.check(options, incremental=ctx.incremental)
        if problems:
            raise PermanentError(f"{ctx.dataset}: " + "; ".join(problems))
        endpoint = _endpoint(options.connection, options.user, options.password)
        what = f"source {ctx.dataset}"
        source = quote_name(options.table) if options.table else f"({options.query}) AS etl_query"
        with session(endpoint, what) as conn:
            columns = _describe(conn, options, source)
            where = [f"({options.where})"] if options.where else []
            if ctx.incremental is not None:
                where += _incremental(ctx, conn, columns, source, where)
            queries = _partition_queries(conn, options, columns, source, where, what)
            conn.rollback()
        from etl_plugin_mysql.datasource import MySQLDataSource

        schema = ", ".join(f"`{c.name}` {c.spark_type}" for c in columns)
        return datasources.read(
            ctx.spark,
            MySQLDataSource,
            schema,
            {**endpoint.to_options(), "what": what, "queries": queries},
        )


def _describe(conn: Any, options: MySQLSourceOptions, source: str) -> list[Any]:
    """The selected columns with their types, from ``SHOW COLUMNS`` of the table, or of an
    empty temporary table made from the query."""
    with conn.cursor() as cursor:
        if options.table:
            cursor.execute(f"SHOW COLUMNS FROM {source}")
            found = {row[0]: row[1] for row in cursor.fetchall()}
        else:
            cursor.execute("DROP TEMPORARY TABLE IF EXISTS etl_probe")
            cursor.execute(f"CREATE TEMPORARY TABLE etl_probe AS SELECT * FROM {source} LIMIT 0")  # noqa: S608
            cursor.execute("SHOW COLUMNS FROM etl_probe")
            found = {row[0]: row[1] for row in cursor.fetchall()}
            cursor.execute("DROP TEMPORARY TABLE etl_probe")
    if not options.columns:
        return [read_column(name, kind) for name, kind in found.items()]
    by_lower = {name.lower(): name for name in found}
    missing = [c for c in options.columns if c.lower() not in by_lower]
    if missing:
        raise PermanentError(
            f"columns {', '.join(missing)} not found in {source}; known: {', '.join(found)}"
        )
    return [read_column(by_lower[c.lower()], found[by_lower[c.lower()]]) for c in options.columns]


def _column_type(conn: Any, source: str, column: str) -> str:
    with conn.cursor() as cursor:
        cursor.execute("DROP TEMPORARY TABLE IF EXISTS etl_probe")
        cursor.execute(
            f"CREATE TEMPORARY TABLE etl_probe AS SELECT {quote_name(column)} FROM {source} LIMIT 0"  # noqa: S608
        )
        cursor.execute("SHOW COLUMNS FROM etl_probe")
        kind = cursor.fetchone()[1]
        cursor.execute("DROP TEMPORARY TABLE etl_probe")
    return str(kind)


def _incremental(
    ctx: Context, conn: Any, columns: list[Any], source: str, where: list[str]
) -> list[str]:
    """``column > bookmark AND column <= max``, reading max once; proposes max."""
    column = str(ctx.incremental["column"])  # type: ignore[index]
    expr = _comparable(conn, source, column)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT MAX({expr}) FROM {source} {_where(where)}")  # noqa: S608
        (high,) = cursor.fetchone()
    if high is None:  # nothing new: known to be empty (a count could be optimised away)
        ctx.report_rows(0)
        return ["FALSE"]
    conditions = [f"{expr} <= {_bound(high)}"]
    if ctx.bookmark is not None:
        conditions.append(f"{expr} > {_bound(_from_bookmark(ctx.bookmark))}")
    ctx.propose_bookmark(_to_bookmark(high))
    return conditions


def _comparable(conn: Any, source: str, column: str) -> str:
    """The column as compared in SQL: TIMESTAMP columns in UTC (bounds are UTC)."""
    kind = _column_type(conn, source, column).lower()
    name = quote_name(column)
    if kind.startswith("timestamp"):
        return f"CONVERT_TZ({name}, @@session.time_zone, '+00:00')"
    return name


def _bound(value: Any) -> str:
    return literal(value)


def _to_bookmark(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _from_bookmark(value: Any) -> Any:
    if isinstance(value, str):
        for parse in (dt.datetime.fromisoformat, dt.date.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
    return value


def _where(conditions: list[str]) -> str:
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def _partition_queries(
    conn: Any,
    options: MySQLSourceOptions,
    columns: list[Any],
    source: str,
    where: list[str],
    what: str,
) -> list[str]:
    select = ", ".join(f"{c.expression} AS {quote_name(c.name)}" for c in columns)
    base = f"SELECT {select} FROM {source}"  # noqa: S608
    if options.predicates:
        return [f"{base} {_where([*where, f'({p})'])}" for p in options.predicates]
    if not options.partition_column or options.partitions == 1:
        return [f"{base} {_where(where)}"]
    expr = _comparable(conn, source, options.partition_column)
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT MIN({expr}), MAX({expr}) FROM {source} {_where(where)}")  # noqa: S608
        low, high = cursor.fetchone()
    if low is None:
        return [f"{base} {_where(where)}"]
    if isinstance(low, bool) or not isinstance(low, int | dt.date):
        raise PermanentError(
            f"{what}: partition_column {options.partition_column!r} is "
            f"{type(low).__name__}; use an integer, date or timestamp column, or `predicates`"
        )
    ranges = partition_bounds(low, high, options.partitions)
    queries = []
    for i, (start, stop) in enumerate(ranges):
        conditions = [f"{expr} >= {_bound(start)}", f"{expr} < {_bound(stop)}"]
        if i == 0:
            conditions = [f"({' AND '.join(conditions)} OR {expr} IS NULL)"]
        queries.append(f"{base} {_where([*where, *conditions])}")
    return queries


# --- loader -------------------------------------------------------------------------------


class MySQLLoader(Loader):
    """Stage into ``etl_stg_<run_key>_<n>`` (created LIKE the target, so its NOT NULL and CHECK
    constraints refuse bad rows while staging), then publish in one transaction with the
    ``etl_ledger`` row. With ``on_reject: dead_letter`` the staging table is relaxed (no NOT
    NULL, CHECK or unique index; strings unbounded) and the publish isolates the rows the
    target refuses by bisecting the merge in savepoints."""

    name = "mysql"
    Options = MySQLSinkOptions
    capabilities = frozenset({"batch", "streaming", "upsert", "exactly_once"})
    modes: ClassVar[tuple[str, ...]] = ("error", "append", "overwrite", "upsert")

    @staticmethod
    def _names(options: MySQLSinkOptions, run_key: str, index: int) -> tuple[str, str, str]:
        table = options.table
        schema, _, _ = table.rpartition(".")
        staging = staging_table(run_key, index)
        prefix = f"{schema}." if schema else ""
        return prefix + staging, prefix + staging + TASKS_SUFFIX, prefix + LEDGER_TABLE

    def preflight(self, ctx: Preflight, options: MySQLSinkOptions) -> None:
        """One connection; the target exists unless the sink creates it."""
        _preflight(options, create_table=options.create_table)

    def stage(self, ctx: Context, df: DataFrame, options: MySQLSinkOptions) -> Staged:
        endpoint = _endpoint(options.connection, options.user, options.password)
        what = f"sink {ctx.dataset}"
        index = ctx.sink_index or 0
        staging, tasks, _ = self._names(options, ctx.run_key, index)
        fields = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
        nested = [name for name, kind in fields if not column_ddl(kind)]
        if nested:
            raise PermanentError(
                f"{what}: columns {', '.join(nested)} are arrays, maps or structs; cast them to "
                "string (e.g. to_json) in a transform first"
            )
        target = quote_name(options.table)
        with session(endpoint, what) as conn:
            existing = _target_columns(conn, options.table)
            if existing is None and not options.create_table:
                raise _missing(options.table, endpoint, sink=True, what=what)
            with conn.cursor() as cursor:
                if existing is None:
                    if "." in options.table:  # `database.table`: the database first
                        database = options.table.rsplit(".", 1)[0]
                        cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quote_name(database)}")
                    cursor.execute(_create_ddl(target, fields, list(ctx.key)))
                    existing = [name for name, _ in fields]
                lower = {c.lower() for c in existing}
                extra = [(n, k) for n, k in fields if n.lower() not in lower]
                if extra and options.schema_drift == "fail":
                    raise PermanentError(
                        f"{what}: columns {', '.join(n for n, _ in extra)} are not in "
                        f"{options.table}; add them, drop them in a transform, or set "
                        "`schema_drift: add_columns`"
                    )
                for name, kind in extra:
                    cursor.execute(
                        f"ALTER TABLE {target} ADD COLUMN {quote_name(name)} {column_ddl(kind)}"
                    )
                if ctx.mode == "upsert":
                    _check_key(cursor, options.table, ctx.key, what)
                if ctx.mode == "error":
                    _refuse_rows(cursor, options.table, what)
                cursor.execute(f"SHOW COLUMNS FROM {target} WHERE Type LIKE 'bit%%'")
                bit_columns = [row[0] for row in cursor.fetchall()]
                cursor.execute(f"DROP TABLE IF EXISTS {quote_name(staging)}, {quote_name(tasks)}")
                cursor.execute(f"CREATE TABLE {quote_name(staging)} LIKE {target}")
                if ctx.on_reject == "dead_letter":
                    _relax_staging(cursor, staging)
                cursor.execute(
                    f"CREATE TABLE {quote_name(tasks)} (task INT PRIMARY KEY) ENGINE=InnoDB"
                )
        from etl_plugin_mysql.datasource import MySQLDataSource

        datasources.write(
            df,
            MySQLDataSource,
            {
                **endpoint.to_options(),
                "what": what,
                "table": staging,
                "target": options.table,
                "tasks_table": tasks,
                "bit_columns": bit_columns,
            },
        )
        return Staged(
            ctx.dataset,
            index,
            ctx.run_key,
            {"staging": staging, "columns": [name for name, _ in fields]},
        )

    def publish(self, ctx: Context, staged: Staged, options: MySQLSinkOptions) -> list[Rejected]:
        endpoint = _endpoint(options.connection, options.user, options.password)
        what = f"sink {ctx.dataset}"
        staging, tasks, ledger = self._names(options, staged.run_key, staged.index)
        target = quote_name(options.table)
        columns = list(staged.details.get("columns", ()))
        stream_ledger = ledger[: -len(LEDGER_TABLE)] + STREAM_LEDGER_TABLE
        with session(endpoint, what) as conn, conn.cursor() as cursor:
            if ctx.micro_batch is None:
                claimed = self._claim_run(cursor, quote_name(ledger), ctx, staged.sink)
            else:
                claimed = self._claim_batch(cursor, quote_name(stream_ledger), ctx, what)
            rejected: list[Rejected] = []
            if claimed:
                if ctx.on_reject == "dead_letter":
                    rejected = self._merge_rejecting(
                        cursor, ctx, options, target, quote_name(staging), columns, what
                    )
                else:
                    self._merge(cursor, ctx, options, target, quote_name(staging), columns, what)
            conn.commit()
            cursor.execute(f"DROP TABLE IF EXISTS {quote_name(staging)}, {quote_name(tasks)}")
        return rejected

    @staticmethod
    def _claim_run(cursor: Any, ledger: str, ctx: Context, sink: str) -> bool:
        """Starts the publish transaction with the run's ledger row (DDL first: it commits in
        MySQL): False if it was there already."""
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} (pipeline VARCHAR(255) NOT NULL, "
            "run_id VARCHAR(255) NOT NULL, sink VARCHAR(255) NOT NULL, published_at "
            "DATETIME(6) NOT NULL, PRIMARY KEY (pipeline, run_id, sink)) ENGINE=InnoDB"
        )
        cursor.execute("START TRANSACTION")
        return bool(
            cursor.execute(
                f"INSERT IGNORE INTO {ledger} (pipeline, run_id, sink, published_at) "  # noqa: S608
                "VALUES (%s, %s, %s, UTC_TIMESTAMP(6))",
                (ctx.pipeline, ctx.run_id, sink),
            )
        )

    @staticmethod
    def _claim_batch(cursor: Any, ledger: str, ctx: Context, what: str) -> bool:
        """Starts the publish transaction with the sink's stream ledger row moved to this
        micro-batch (locked until it commits): False if the batch was published already."""
        assert ctx.micro_batch is not None
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} (pipeline VARCHAR(255) NOT NULL, "
            "sink VARCHAR(255) NOT NULL, query_id VARCHAR(64) NOT NULL, batch_id BIGINT NOT "
            "NULL, published_at DATETIME(6) NOT NULL, PRIMARY KEY (pipeline, sink)) "
            "ENGINE=InnoDB"
        )
        cursor.execute("START TRANSACTION")
        key = (ctx.pipeline, ctx.dataset)
        query_id, batch_id = ctx.micro_batch
        cursor.execute(
            f"INSERT INTO {ledger} (pipeline, sink, query_id, batch_id, published_at) VALUES "  # noqa: S608
            "(%s, %s, %s, -1, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE batch_id = batch_id",
            (*key, query_id),
        )
        cursor.execute(
            f"SELECT query_id, batch_id FROM {ledger} WHERE pipeline = %s AND sink = %s "  # noqa: S608
            "FOR UPDATE",
            key,
        )
        stored = cursor.fetchone()
        if not stream_batch_is_new(stored, ctx.micro_batch, start_over=ctx.start_over, what=what):
            return False
        cursor.execute(
            f"UPDATE {ledger} SET query_id = %s, batch_id = %s, published_at = UTC_TIMESTAMP(6) "  # noqa: S608
            "WHERE pipeline = %s AND sink = %s",
            (query_id, batch_id, *key),
        )
        return True

    @staticmethod
    def _before_merge(cursor: Any, mode: str | None, table: str, target: str, what: str) -> None:
        if mode == "error":
            _refuse_rows(cursor, table, what)
        if mode == "overwrite":
            cursor.execute(f"DELETE FROM {target}")  # noqa: S608 - TRUNCATE would commit

    @staticmethod
    def _merge_statement(
        upsert_key: Sequence[str], target: str, source: str, columns: list[str], where: str = ""
    ) -> str:
        """The merge from staging: a plain insert, or with ``upsert_key`` an upsert on it."""
        names = ", ".join(quote_name(c) for c in columns)
        statement = f"INSERT INTO {target} ({names}) SELECT {names} FROM {source}{where}"  # noqa: S608
        if upsert_key:
            keys = {k.lower() for k in upsert_key}
            updates = [c for c in columns if c.lower() not in keys] or columns[:1]
            statement += " ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{quote_name(c)} = VALUES({quote_name(c)})" for c in updates
            )
        return statement

    @staticmethod
    def _merge(
        cursor: Any,
        ctx: Context,
        options: MySQLSinkOptions,
        target: str,
        staging: str,
        columns: list[str],
        what: str,
    ) -> None:
        MySQLLoader._before_merge(cursor, ctx.mode, options.table, target, what)
        upsert_key = ctx.key  # the core sets a key only for the mode that needs one: upsert
        statement = MySQLLoader._merge_statement(upsert_key, target, staging, columns)
        if upsert_key:  # how many rows have a key already in the target, before the merge
            on = " AND ".join(f"t.{quote_name(k)} = s.{quote_name(k)}" for k in upsert_key)
            cursor.execute(
                f"SELECT COUNT(*), COALESCE(SUM(EXISTS (SELECT 1 FROM {target} t "  # noqa: S608
                f"WHERE {on})), 0) FROM {staging} s"
            )
            total, matched = (int(n) for n in cursor.fetchone())
        try:
            cursor.execute(statement)
        except Exception as exc:
            import pymysql

            if isinstance(exc, pymysql.err.IntegrityError):
                raise LoadError(
                    f"{what}: the target refused the staged rows: {exc.args[-1]}; nothing was "
                    "published (fix the rows, or use `mode: upsert` with the key)"
                ) from None
            raise
        if upsert_key:
            ctx.report_merged(total - matched, matched)

    @staticmethod
    def _merge_rejecting(
        cursor: Any,
        ctx: Context,
        options: MySQLSinkOptions,
        target: str,
        staging: str,
        columns: list[str],
        what: str,
    ) -> list[Rejected]:
        """``on_reject: dead_letter`` (DESIGN §4 step 5) through
        :func:`~etl_core.relational.merge_rejecting`: a row is refused with one of
        :data:`REJECT_CODES`. Returns the refused rows, each with the server's message; the rest
        stay merged in this (still open) transaction."""
        import pymysql

        MySQLLoader._before_merge(cursor, ctx.mode, options.table, target, what)
        upsert_key = ctx.key  # the core sets a key only for the mode that needs one: upsert
        if upsert_key:
            _refuse_duplicate_keys(cursor, upsert_key, staging, what)

        def merge(source: str, where: str) -> None:
            statement = MySQLLoader._merge_statement(upsert_key, target, source, columns, where)
            cursor.execute(statement)

        def number() -> int:
            names = ", ".join(quote_name(c) for c in columns)
            cursor.execute(f"DROP TEMPORARY TABLE IF EXISTS {REJECT_ROWS}")
            cursor.execute(  # a temporary table: no implicit commit
                f"CREATE TEMPORARY TABLE {REJECT_ROWS} (PRIMARY KEY (etl_row)) AS SELECT "  # noqa: S608
                f"ROW_NUMBER() OVER () AS etl_row, {names} FROM {staging}"
            )
            cursor.execute(f"SELECT COUNT(*) FROM {REJECT_ROWS}")  # noqa: S608
            (count,) = cursor.fetchone()
            return int(count)

        def is_reject(exc: Exception) -> TypeGuard[pymysql.MySQLError]:
            return isinstance(exc, pymysql.MySQLError) and mysql_code(exc) in REJECT_CODES

        offenders = merge_rejecting(
            cursor.execute, merge, staging, number=number, is_reject=is_reject
        )
        as_json = ", ".join(f"{literal(c)}, {quote_name(c)}" for c in columns)
        rejected: list[Rejected] = []
        for row_number, error in offenders:
            cursor.execute(
                f"SELECT JSON_OBJECT({as_json}) FROM {REJECT_ROWS} WHERE etl_row = %s",  # noqa: S608
                (row_number,),
            )
            (row,) = cursor.fetchone()
            message = str(error.args[1]) if len(error.args) > 1 else str(error)
            rejected.append(Rejected(row=row, message=message, rule=_rule(error, message)))
        cursor.execute(f"DROP TEMPORARY TABLE IF EXISTS {REJECT_ROWS}")
        return rejected

    def discard(self, ctx: Context, staged: Staged, options: MySQLSinkOptions) -> None:
        endpoint = _endpoint(options.connection, options.user, options.password)
        staging, tasks, _ = self._names(options, staged.run_key, staged.index)
        with session(endpoint, f"sink {ctx.dataset}") as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {quote_name(staging)}, {quote_name(tasks)}")

    def clean_stale(
        self, ctx: Context, options: MySQLSinkOptions, live_runs: LiveRuns
    ) -> list[str]:
        endpoint = _endpoint(options.connection, options.user, options.password)
        schema, _, _ = options.table.rpartition(".")
        dropped = []
        with session(endpoint, f"sink {ctx.dataset}") as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, UNIX_TIMESTAMP(create_time) FROM information_schema.tables "
                "WHERE table_schema = COALESCE(%s, DATABASE()) "
                "AND table_name LIKE 'etl\\_stg\\_%%'",
                (schema or None,),
            )
            for name, created in cursor.fetchall():
                base = name.removesuffix(TASKS_SUFFIX)
                key = run_key_of_staging(base)
                if key is None or not live_runs.stale(key, float(created or 0)):
                    continue
                full = f"{schema}.{name}" if schema else name
                cursor.execute(f"DROP TABLE IF EXISTS {quote_name(full)}")
                dropped.append(f"{endpoint.where}/{name}")
        return dropped


def _preflight(options: Any, *, create_table: bool | None) -> None:
    """Connect once; a table named by a source, or by a sink that does not create it, must
    exist (``create_table`` is ``None`` for a source)."""
    endpoint = _endpoint(options.connection, options.user, options.password)
    with session(endpoint, "connection") as conn:
        if options.table is None or create_table or _target_columns(conn, options.table):
            return
    raise _missing(options.table, endpoint, sink=create_table is not None)


def _missing(table: str, endpoint: Endpoint, *, sink: bool, what: str = "") -> PermanentError:
    """A source's or sink's table is not there: where was looked, and the fix."""
    fix = "check `table` and `connection.database`"
    if sink:
        fix += ", create the table, or set `create_table: true` (it creates the database too)"
    head = f"{what}: " if what else ""
    return PermanentError(f"{head}table {table} does not exist in {endpoint.where}; {fix}")


def _target_columns(conn: Any, table: str) -> list[str] | None:
    schema, _, name = table.rpartition(".")
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "COALESCE(%s, DATABASE()) AND table_name = %s ORDER BY ordinal_position",
            (schema or None, name),
        )
        found = [row[0] for row in cursor.fetchall()]
    return found or None


def _create_ddl(target: str, fields: list[tuple[str, str]], key: list[str]) -> str:
    keys = {k.lower() for k in key}
    parts = []
    for name, kind in fields:
        ddl = column_ddl(kind)
        if name.lower() in keys:
            ddl = "VARCHAR(255)" if ddl == "LONGTEXT" else ddl
            ddl = "VARBINARY(255)" if ddl == "LONGBLOB" else ddl
            ddl += " NOT NULL"
        parts.append(f"{quote_name(name)} {ddl}")
    if key:
        parts.append(f"PRIMARY KEY ({', '.join(quote_name(k) for k in key)})")
    return f"CREATE TABLE {target} ({', '.join(parts)}) ENGINE=InnoDB"


def _check_key(cursor: Any, table: str, key: Sequence[str], what: str) -> None:
    """``ON DUPLICATE KEY UPDATE`` matches on the primary key and every unique index, so the
    upsert key must be one of them."""
    cursor.execute(f"SHOW INDEX FROM {quote_name(table)} WHERE Non_unique = 0")
    indexes: dict[str, set[str]] = {}
    for row in cursor.fetchall():
        indexes.setdefault(row[2], set()).add(row[4].lower())
    wanted = {k.lower() for k in key}
    if wanted not in indexes.values():
        raise PermanentError(
            f"{what}: `key: {list(key)}` is not the primary key or a unique index of "
            f"{table}; add one, e.g. `ALTER TABLE {table} ADD UNIQUE ({', '.join(key)})`"
        )


def _relax_staging(cursor: Any, staging: str) -> None:
    """A staging table that accepts what the target may refuse (``on_reject: dead_letter``):
    every column nullable, strings unbounded, no auto-increment, CHECK constraint or unique
    index. The merge then refuses the rows one by one, with the server's reason."""
    schema, _, name = staging.rpartition(".")
    cursor.execute(
        "SELECT column_name, column_type, data_type, extra FROM information_schema.columns "
        "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema or None, name),
    )
    changes = []
    for column, column_type, data_type, extra in cursor.fetchall():
        if "generated" in extra.lower() or extra.upper() in ("VIRTUAL", "PERSISTENT", "STORED"):
            continue
        kind = {"varchar": "LONGTEXT", "char": "LONGTEXT", "text": "LONGTEXT"}.get(
            data_type.lower(), column_type
        )
        kind = {"varbinary": "LONGBLOB", "binary": "LONGBLOB"}.get(data_type.lower(), kind)
        changes.append(f"MODIFY {quote_name(column)} {kind} NULL")
    cursor.execute(f"SHOW INDEX FROM {quote_name(staging)} WHERE Non_unique = 0")
    unique = sorted({row[2] for row in cursor.fetchall()})
    changes += [
        "DROP PRIMARY KEY" if index == "PRIMARY" else f"DROP INDEX {quote_name(index)}"
        for index in unique
    ]
    if changes:
        cursor.execute(f"ALTER TABLE {quote_name(staging)} {', '.join(changes)}")
    cursor.execute(
        "SELECT constraint_name FROM information_schema.check_constraints "
        "WHERE constraint_schema = COALESCE(%s, DATABASE()) AND table_name = %s",
        (schema or None, name),
    )
    for (constraint,) in cursor.fetchall():
        drop = f"DROP CONSTRAINT {quote_name(constraint)}"
        cursor.execute(f"ALTER TABLE {quote_name(staging)} {drop}")


def _refuse_duplicate_keys(cursor: Any, key: Sequence[str], staging: str, what: str) -> None:
    """The relaxed staging table has no unique key: several rows with one key still fail."""
    keys = ", ".join(quote_name(k) for k in key)
    cursor.execute(
        f"SELECT 1 FROM {staging} GROUP BY {keys} HAVING COUNT(*) > 1 LIMIT 1"  # noqa: S608
    )
    if cursor.fetchone() is not None:
        raise LoadError(
            f"{what}: the input holds several rows with the same key ({', '.join(key)})"
            "; upsert refuses to pick one. Deduplicate first, e.g. a `deduplicate` transform on "
            "the key ordered by a timestamp"
        )


_RULE_PATTERNS = (
    re.compile(r"CONSTRAINT [`']([^`']+)[`'] failed"),  # MariaDB CHECK (4025)
    re.compile(r"Check constraint '([^']+)' is violated"),  # MySQL CHECK (3819)
    re.compile(r"for key '([^']+)'"),  # duplicate key (1062)
    re.compile(r"CONSTRAINT `([^`]+)` FOREIGN KEY"),  # foreign keys (1451, 1452)
)


def _rule(error: BaseException, message: str) -> str:
    """What refused the row: the constraint's or key's name, else ``mysql error <code>``."""
    for pattern in _RULE_PATTERNS:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return f"mysql error {mysql_code(error)}"


def _refuse_rows(cursor: Any, table: str, what: str) -> None:
    """``mode: error``: the target must hold no rows."""
    cursor.execute(f"SELECT 1 FROM {quote_name(table)} LIMIT 1")  # noqa: S608
    if cursor.fetchone() is not None:
        raise LoadError(
            f"{what}: {table} already holds rows and the sink's mode is `error`; set "
            "`mode: append`, `overwrite` or `upsert`, or empty the table"
        )
