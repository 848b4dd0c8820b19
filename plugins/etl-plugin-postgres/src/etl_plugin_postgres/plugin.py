"""Registers the ``postgres`` extractor and loader (the ``etl`` entry point)."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import Extractor, Loader, hookimpl
from etl_plugin_postgres.components import PostgresExtractor, PostgresLoader


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register(PostgresExtractor)


@hookimpl
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    register(PostgresLoader)
