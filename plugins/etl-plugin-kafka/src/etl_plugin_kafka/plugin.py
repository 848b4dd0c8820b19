"""Registers the ``kafka`` extractor (the ``etl`` entry point)."""

from __future__ import annotations

from collections.abc import Callable

from etl_core import Extractor, hookimpl
from etl_plugin_kafka.components import KafkaExtractor


@hookimpl
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    register(KafkaExtractor)
