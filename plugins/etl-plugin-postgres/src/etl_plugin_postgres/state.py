"""The ``postgres`` state store: incremental bookmarks in a table (DESIGN §4), one row per
pipeline and source, so runs on any machine share them and a save is one transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from etl_core import Secret, StateStore
from etl_plugin_postgres.options import Connection
from etl_plugin_postgres.pg import ConnInfo, control, ident, split_table


@attrs.frozen
class PostgresStateOptions:
    connection: Connection = attrs.field(factory=Connection)
    #: filled from the state block's ``credentials:`` entry (fields ``user`` and ``password``)
    user: Secret | None = None
    password: Secret | None = None
    #: the bookmarks table (schema.table), created on first use
    table: str = "public.etl_state"


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
