"""Connections, error mapping, identifiers and catalog reads (driver and executors); the type
mapping is in :mod:`etl_plugin_postgres.types`.

psycopg and ADBC are imported inside the functions that use them, so loading the plugin
(``etl plugins``, ``etl validate``) imports no database driver.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from etl_core import PermanentError, TransientError

if TYPE_CHECKING:
    import psycopg

#: SQLSTATE classes/codes worth a retry: connection exceptions, serialization failures,
#: deadlocks, lock timeouts, admin shutdown, too many connections.
TRANSIENT_STATES = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300")


@attrs.frozen
class ConnInfo:
    """What a driver needs to connect; picklable so it travels to the executors as options."""

    host: str
    port: int
    database: str
    sslmode: str
    options: str | None
    connect_timeout: int
    user: str | None
    password: str | None

    @classmethod
    def from_options(cls, options: Any) -> ConnInfo:
        c = options.connection
        return cls(
            c.host,
            c.port,
            c.database,
            c.sslmode,
            c.options,
            c.connect_timeout,
            options.user.reveal() if options.user is not None else None,
            options.password.reveal() if options.password is not None else None,
        )

    def public_json(self) -> str:
        """Everything but the password (that travels under the ``password`` option key)."""
        return json.dumps({k: v for k, v in attrs.asdict(self).items() if k != "password"})

    @classmethod
    def from_data_source(cls, options: Mapping[str, str]) -> ConnInfo:
        return cls(**json.loads(options["connection"]), password=options.get("password") or None)

    def where(self) -> str:
        """The server, for messages (no user or password: both come from credentials)."""
        return f"{self.host}:{self.port}/{self.database}"

    def psycopg_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": "etl",
        }
        for key in ("user", "password", "options"):
            if getattr(self, key):
                kwargs[key] = getattr(self, key)
        return kwargs

    def uri(self) -> str:
        auth = ""
        if self.user:
            auth = urllib.parse.quote(self.user, safe="")
            if self.password:
                auth += ":" + urllib.parse.quote(self.password, safe="")
            auth += "@"
        query = {
            "sslmode": self.sslmode,
            "connect_timeout": str(self.connect_timeout),
            "application_name": "etl",
        }
        if self.options:
            query["options"] = self.options
        return (
            f"postgresql://{auth}{self.host}:{self.port}/"
            f"{urllib.parse.quote(self.database, safe='')}?{urllib.parse.urlencode(query)}"
        )

    def redact(self, text: str) -> str:
        for secret in {self.password, urllib.parse.quote(self.password or "", safe="")}:
            if secret:
                text = text.replace(secret, "***")
        return text


def translate(exc: BaseException, info: ConnInfo, what: str) -> Exception:
    """A driver error as the core's TransientError or PermanentError, naming ``what`` (e.g.
    ``sink 'warehouse' (analytics.daily)``) and the fix; the password is redacted."""
    state = getattr(exc, "sqlstate", None) or ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "the driver failed"
    # the driver's own prefixes say nothing to a user: "[libpq] ", "Execution error
    # [PGRES_FATAL_ERROR]: ERROR:  "
    text = info.redact(
        re.sub(r"^(\[libpq\] )?(Execution error \[PGRES_\w+\]: )?(ERROR:\s+)?", "", first)
    )
    kind = type(exc).__name__
    if state in ("28P01", "28000") or "password authentication failed" in text:
        return PermanentError(
            f"{what}: authentication failed at {info.where()}: {text}; check the `user`/"
            "`password` fields of the credentials entry"
        )
    if (
        state.startswith("08")
        or any(state == s for s in TRANSIENT_STATES)
        or (not state and kind in ("OperationalError", "ConnectionTimeout"))
    ):
        return TransientError(
            f"{what}: {info.where()} is unreachable or busy: {text}; check `connection.host` "
            "and `connection.port`, and that the server is up"
        )
    if state == "42501":
        return PermanentError(
            f"{what}: permission denied at {info.where()}: {text}; GRANT the needed privilege "
            "to the user"
        )
    if state in ("42P01", "3F000"):
        return PermanentError(
            f"{what}: {text}; check `table` (write schema.table) or create it "
            "(sinks: `create_table: true`)"
        )
    if state == "42703":
        return PermanentError(f"{what}: {text}; check the column names (`columns`, `where`, `key`)")
    if state.startswith("42"):
        return PermanentError(f"{what}: SQL error: {text}; check `query`/`where`/`predicates`")
    if state == "3D000":
        return PermanentError(f"{what}: {text}; check `connection.database`")
    return PermanentError(f"{what}: {text}")


@contextlib.contextmanager
def control(
    info: ConnInfo, what: str, *, autocommit: bool = False, attempts: int = 3
) -> Iterator[psycopg.Connection]:
    """A psycopg connection for control statements, retried briefly while the server is
    unreachable (``attempts``); driver errors come out as Transient/PermanentError."""
    import psycopg
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.5, max=4),
        retry=tenacity.retry_if_exception_type(psycopg.OperationalError),
        reraise=True,
    )
    try:
        conn = retrying(psycopg.connect, autocommit=autocommit, **info.psycopg_kwargs())
    except psycopg.Error as exc:
        raise translate(exc, info, what) from None
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise translate(exc, info, what) from None
    finally:
        conn.close()


def adbc_connect(info: ConnInfo, what: str) -> Any:
    import adbc_driver_postgresql.dbapi as adbc

    try:
        return adbc.connect(info.uri(), autocommit=False)
    except Exception as exc:  # noqa: BLE001 - every driver error becomes a typed one
        raise translate(_adbc_state(exc), info, what) from None


class _AdbcError(Exception):
    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.sqlstate = getattr(exc, "sqlstate", None) or _state_from_text(str(exc))


def _adbc_state(exc: BaseException) -> BaseException:
    return _AdbcError(exc)


def _state_from_text(text: str) -> str | None:
    marker = "SQLSTATE: "
    if marker in text:
        return text.split(marker, 1)[1][:5]
    if "Connection refused" in text or "could not connect" in text or "timeout" in text:
        return "08001"
    return None


def adbc_error(exc: BaseException, info: ConnInfo, what: str) -> Exception:
    return translate(_AdbcError(exc), info, what)


# -- identifiers -----------------------------------------------------------------------


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` → (schema, table); a bare name is in ``public``. Quotes are allowed."""
    parts = [p.strip('"') for p in _split_dotted(name)]
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise PermanentError(f"table {name!r}: write `table` as schema.table")


def _split_dotted(name: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in name:
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def ident(*names: str) -> str:
    """Quoted, dotted identifier."""
    return ".".join('"' + n.replace('"', '""') + '"' for n in names)


# -- catalog ---------------------------------------------------------------------------


@attrs.frozen
class PgColumn:
    name: str
    typname: str  # pg_type.typname (arrays: the element's name with a leading `_`)
    category: str  # pg_type.typcategory: A array, E enum, N numeric, ...
    formatted: str  # format_type(): the DDL type, e.g. numeric(12,2), character varying(10)
    element: str | None = None  # element typname of arrays
    precision: int | None = None
    scale: int | None = None


CATALOG_COLUMNS = """
SELECT a.attname, t.typname, t.typcategory, format_type(a.atttypid, a.atttypmod),
       e.typname, a.atttypmod
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def _numeric_typmod(typname: str, typmod: int) -> tuple[int | None, int | None]:
    if typname != "numeric" or typmod < 4:
        return None, None
    typmod -= 4
    return (typmod >> 16) & 0xFFFF, typmod & 0xFFFF


def table_columns(conn: psycopg.Connection, table: str) -> list[PgColumn] | None:
    """The columns of a table (``schema.table`` quoted), or ``None`` if it does not exist."""
    row = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
    if row is None or row[0] is None:
        return None
    columns = []
    for name, typname, category, formatted, element, typmod in conn.execute(
        CATALOG_COLUMNS, [table]
    ):
        precision, scale = _numeric_typmod(typname, typmod)
        columns.append(PgColumn(name, typname, category, formatted, element, precision, scale))
    return columns


def query_columns(conn: psycopg.Connection, query: str) -> list[PgColumn]:
    """The result columns of a query (it is not run: ``LIMIT 0``)."""
    cursor = conn.execute(f"SELECT * FROM ({query}) AS etl_q LIMIT 0")  # noqa: S608 - the user's query
    description = cursor.description or []
    oids = sorted({d.type_code for d in description})
    types = {
        oid: (typname, category, element)
        for oid, typname, category, element in conn.execute(
            "SELECT t.oid, t.typname, t.typcategory, e.typname FROM pg_type t "
            "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
            "WHERE t.oid = ANY(%s)",
            [oids],
        )
    }
    columns = []
    for d in description:
        typname, category, element = types[d.type_code]
        precision = d.precision if typname == "numeric" else None
        scale = d.scale if typname == "numeric" else None
        columns.append(PgColumn(d.name, typname, category, typname, element, precision, scale))
    return columns


def literal(conn: psycopg.Connection, value: Any) -> str:
    from psycopg import sql

    return sql.Literal(value).as_string(conn)


def names(columns: Sequence[str]) -> str:
    return ", ".join(ident(c) for c in columns)
