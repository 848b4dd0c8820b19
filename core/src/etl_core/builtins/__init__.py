"""Built-in components, registered through the same hooks as any plugin.

The hooks import their modules lazily so building a plugin host stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from etl_core.markers import hookimpl


@hookimpl
def etl_register_extractors(register: Callable[[type], None]) -> None:
    from etl_core.builtins.files import FilesExtractor

    register(FilesExtractor)


@hookimpl
def etl_register_transformers(register: Callable[[type], None]) -> None:
    from etl_core.builtins import transforms

    for cls in (
        transforms.SqlTransform,
        transforms.JoinTransform,
        transforms.FilterTransform,
        transforms.SelectTransform,
        transforms.AggregateTransform,
        transforms.WindowTransform,
        transforms.DeduplicateTransform,
        transforms.UnionTransform,
        transforms.PythonTransform,
    ):
        register(cls)


@hookimpl
def etl_register_loaders(register: Callable[[type], None]) -> None:
    from etl_core.builtins.files import FilesLoader

    register(FilesLoader)


@hookimpl
def etl_register_credential_providers(register: Callable[[type], None]) -> None:
    from etl_core.builtins.credentials import EnvProvider, FileProvider

    register(EnvProvider)
    register(FileProvider)


@hookimpl
def etl_register_metrics_reporters(register: Callable[[type], None]) -> None:
    from etl_core.builtins.reporters import LogReporter

    register(LogReporter)


@hookimpl
def etl_register_state_stores(register: Callable[[type], None]) -> None:
    from etl_core.builtins.state import FileStateStore

    register(FileStateStore)


@hookimpl
def etl_register_validators(register: Callable[[type], None]) -> None:
    from etl_core.builtins.quality import BUILTIN_RULES

    for cls in BUILTIN_RULES:
        register(cls)
