"""Talks to the backing system. The template's system is a folder of JSON-lines files, so the
connector works before you change anything; replace these functions with calls to your
system's client library, and keep their contracts.

A table is a folder. ``_table.json`` holds the table's schema (Spark DDL), the data files it
lists, and the run keys that published into it (the ledger). A data file is visible only once
``_table.json`` lists it, and ``_table.json`` is replaced atomically under a lock: that is what
makes a publish atomic and idempotent. Staging lives under ``_etl/tmp/<run_key>/``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import fcntl
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

TABLE = "_table.json"
STAGING = "_etl/tmp"


@attrs.frozen
class Table:
    """What ``_table.json`` holds."""

    schema: str  # Spark DDL, e.g. "id BIGINT, name STRING"
    files: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()


def read_table(folder: Path) -> Table | None:
    """The table in ``folder``, or ``None`` when there is none."""
    try:
        data = json.loads((folder / TABLE).read_text())
    except FileNotFoundError:
        return None
    return Table(data["schema"], tuple(data["files"]), tuple(data["runs"]))


def write_table(folder: Path, table: Table) -> None:
    """Replace ``_table.json`` atomically: the commit point of every change."""
    tmp = folder / f".{TABLE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(attrs.asdict(table), indent=1))
    os.replace(tmp, folder / TABLE)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the table's lock: one publish at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "_table.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def encode(value: Any) -> Any:
    """A value as JSON holds it: dates, timestamps (ISO 8601) and decimals as text."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON-lines file")


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]], *, append: bool = False) -> None:
    """Write ``rows`` as a JSON-lines file (or add them at its end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, default=encode, ensure_ascii=False) + "\n")


def _as_text(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind)


def read_rows(path: Path, schema: pa.Schema) -> pa.Table:
    """One JSON-lines file as an Arrow table of ``schema`` (a key missing from a line is null;
    a key the schema does not know is an error)."""
    import pyarrow.json as pj

    data = path.read_bytes()
    if not data.strip():
        return schema.empty_table()
    wire = pa.schema([f.with_type(pa.string()) if _as_text(f.type) else f for f in schema])
    options = pj.ParseOptions(explicit_schema=wire, unexpected_field_behavior="error")
    return pj.read_json(io.BytesIO(data), parse_options=options).cast(schema)


def read_entries(file: Path) -> dict[str, Any]:
    """A secrets file: a JSON object of entries, each a JSON object of fields."""
    entries = json.loads(file.read_text())
    if not isinstance(entries, dict):
        raise ValueError("not a JSON object of entries")
    return entries


def create(folder: Path, schema: str, rows: Sequence[Mapping[str, Any]] = ()) -> None:
    """Create the table ``folder`` with ``schema`` (Spark DDL), holding ``rows``."""
    with locked(folder):
        write_table(folder, Table(schema))
    if rows:
        add(folder, rows)


def add(folder: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add ``rows`` to the table ``folder`` as one new data file."""
    name = f"part-{uuid.uuid4().hex[:12]}.jsonl"
    write_rows(folder / name, rows)
    with locked(folder):
        table = read_table(folder)
        if table is None:
            raise FileNotFoundError(f"{folder} holds no table ({TABLE})")
        write_table(folder, attrs.evolve(table, files=(*table.files, name)))
