"""Registers the ``kafka`` extractor and loader (the ``etl`` entry point)."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import Extractor, Loader, hookimpl
from etl_plugin_kafka.components import KafkaExtractor, KafkaLoader


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register(KafkaExtractor)


@hookimpl
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    register(KafkaLoader)
