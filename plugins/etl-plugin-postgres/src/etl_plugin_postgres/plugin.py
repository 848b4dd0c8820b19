"""Registers the ``postgres`` extractor, loader and state store (the ``etl`` entry point)."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import Extractor, Loader, StateStore, hookimpl
from etl_plugin_postgres.components import (
    PostgresExtractor,
    PostgresLoader,
    PostgresStateStore,
)


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register(PostgresExtractor)


@hookimpl
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    register(PostgresLoader)


@hookimpl
def etl_register_state_stores(register: Callable[[type[StateStore]], None]) -> None:
    register(PostgresStateStore)
