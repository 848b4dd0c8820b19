"""Registers the ``s3`` extractor and loader (the ``etl`` entry point)."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import Extractor, Loader, hookimpl
from etl_plugin_s3.components import S3Extractor, S3Loader


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register(S3Extractor)


@hookimpl
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    register(S3Loader)
