"""Connections, identifier quoting and error classification, shared by the driver and the tasks.

Nothing here imports Spark; PyMySQL is imported when a connection is opened, so loading the
plugin (``etl plugins``) stays cheap. The password travels as a plain string only inside
:class:`Endpoint` objects that never print it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import attrs

from etl_core.errors import EtlError, PermanentError, TransientError

#: MySQL error numbers where retrying may help
TRANSIENT_CODES = frozenset(
    {
        1040,  # too many connections
        1205,  # lock wait timeout
        1213,  # deadlock
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        1927,  # connection killed (MariaDB)
    }
)
AUTH_CODES = frozenset({1045, 1698, 1044, 1142, 1143, 1227, 1370})


@attrs.frozen(repr=False)
class Endpoint:
    """Where and as whom to connect. ``repr`` never shows the password."""

    host: str
    port: int
    database: str
    user: str | None
    password: str | None
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        return f"mysql://{self.user or ''}@{self.host}:{self.port}/{self.database}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def uri(self) -> str:
        """The connectorx URI. It holds the password: never log it."""
        user = quote(self.user or "root", safe="")
        password = f":{quote(self.password, safe='')}" if self.password else ""
        return f"mysql://{user}{password}@{self.host}:{self.port}/{quote(self.database)}"

    def to_options(self) -> dict[str, str]:
        """Data source options (strings). The password goes under ``password``, which Spark
        redacts from plans and the UI."""
        import json

        return {
            "host": self.host,
            "port": str(self.port),
            "database": self.database,
            "user": self.user or "",
            "password": self.password or "",
            "connect_options": json.dumps(dict(self.options)),
        }

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Endpoint:
        import json

        return cls(
            host=options["host"],
            port=int(options["port"]),
            database=options["database"],
            user=options.get("user") or None,
            password=options.get("password") or None,
            options=json.loads(options.get("connect_options") or "{}"),
        )

    def redact(self, text: str) -> str:
        if self.password:
            for form in {self.password, quote(self.password, safe="")}:
                text = text.replace(form, "***")
        return text


def quote_name(name: str) -> str:
    """A backquoted identifier; ``db.table`` is quoted part by part."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in name.split("."))


def literal(value: Any) -> str:
    """A SQL literal for a bookmark or a partition bound."""
    import pymysql.converters

    return str(pymysql.converters.escape_item(value, "utf8mb4"))


def mysql_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def classify(exc: BaseException, what: str, endpoint: Endpoint) -> EtlError:
    """A typed error for a PyMySQL exception, naming the source/sink and the fix, no secret."""
    import pymysql

    code = mysql_code(exc)
    detail = endpoint.redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    where = f"{what} (mysql {endpoint.where})"
    if code in TRANSIENT_CODES or isinstance(exc, TimeoutError | ConnectionError):
        return TransientError(
            f"{where}: {detail} [{code}]; check `connection.host` and `connection.port`, and "
            "that the server is up (retrying may help)"
        )
    if code in AUTH_CODES:
        return PermanentError(
            f"{where}: {detail} [{code}]; check the user and password of the credentials entry "
            "and the user's grants"
        )
    if code == 1049:
        return PermanentError(f"{where}: {detail}; check `connection.database`")
    if code in (1146, 1054):
        return PermanentError(f"{where}: {detail}; check the table and column names")
    if code == 1064:
        return PermanentError(f"{where}: SQL syntax error: {detail}; check `query`/`where`")
    if isinstance(exc, pymysql.err.OperationalError) and code is not None and code >= 2000:
        return TransientError(f"{where}: {detail} [{code}]")
    return PermanentError(f"{where}: {detail} [{code}]")


def connect(endpoint: Endpoint, what: str, *, local_infile: bool = False) -> Any:
    """A PyMySQL connection in UTC with autocommit off, or a typed error."""
    import pymysql

    kwargs: dict[str, Any] = {
        "connect_timeout": 10,
        **dict(endpoint.options),
        "host": endpoint.host,
        "port": endpoint.port,
        "database": endpoint.database,
        "password": endpoint.password or "",
        "autocommit": False,
        "charset": "utf8mb4",
        "local_infile": local_infile,
        "init_command": "SET time_zone = '+00:00'",
    }
    if endpoint.user:
        kwargs["user"] = endpoint.user
    try:
        return pymysql.connect(**kwargs)
    except pymysql.MySQLError as exc:
        raise classify(exc, what, endpoint) from None
    except OSError as exc:
        raise TransientError(f"{what} (mysql {endpoint.where}): {exc}") from None


@contextmanager
def session(endpoint: Endpoint, what: str, *, local_infile: bool = False) -> Iterator[Any]:
    """A connection whose MySQL errors leave as typed errors; rolled back unless committed."""
    import pymysql

    conn = connect(endpoint, what, local_infile=local_infile)
    try:
        yield conn
    except pymysql.MySQLError as exc:
        _rollback(conn)
        raise classify(exc, what, endpoint) from None
    except BaseException:
        _rollback(conn)
        raise
    finally:
        conn.close()


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the connection may be gone; the error says why
        conn.rollback()


_TYPE = re.compile(r"^\s*(\w+)\s*(?:\((.*)\))?\s*(.*)$")


def parse_column_type(text: str) -> tuple[str, str, bool]:
    """``int(10) unsigned`` → ``("int", "10", True)``."""
    match = _TYPE.match(text)
    if match is None:
        return text.lower(), "", False
    return match.group(1).lower(), match.group(2) or "", "unsigned" in match.group(3).lower()
