"""The shape of a streaming pipeline (DESIGN §9): which datasets the stream reaches, which
transforms keep state across micro-batches, and where event time (a watermark) comes from.

A *stateful* transform (its transformer declares ``stateful``: windows, deduplication,
aggregates) on the stream's rows runs inside the streaming query, its state in the
checkpoint, and so does every streamed dataset it reads (*in the query*). Everything else
runs on each micro-batch, as in a batch run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl_core.config.model import PipelineSpec, WatermarkSpec


def streamed_source(spec: PipelineSpec) -> str | None:
    return next((name for name, block in spec.sources.items() if not block.static), None)


def inputs_of(spec: PipelineSpec, name: str) -> list[str]:
    block = spec.transforms.get(name)
    return list(block.inputs) if block is not None else []


def streamed(spec: PipelineSpec) -> set[str]:
    """The datasets that read the streamed source, directly or not (and the source)."""
    source = streamed_source(spec)
    found = {source} if source is not None else set()
    changed = True
    while changed:
        changed = False
        for name, block in spec.transforms.items():
            if name not in found and found & set(block.inputs):
                found.add(name)
                changed = True
    return found


def streamed_inputs(spec: PipelineSpec, name: str) -> list[str]:
    """The inputs of transform ``name`` that read the stream (not its static lookups)."""
    reached = streamed(spec)
    return [i for i in inputs_of(spec, name) if i in reached]


def stateful(spec: PipelineSpec, transforms: Mapping[str, Any]) -> list[str]:
    """The streamed transforms that keep state (``transforms``: the bound ones, by name)."""
    reached = streamed(spec)
    return [
        name
        for name, item in transforms.items()
        if name in reached and "stateful" in item.component.capabilities
    ]


def in_query(spec: PipelineSpec, transforms: Mapping[str, Any]) -> set[str]:
    """The stateful transforms and every streamed dataset they read: computed in the query."""
    reached, found = streamed(spec), set()
    todo = stateful(spec, transforms)
    while todo:
        name = todo.pop()
        if name in reached and name not in found:
            found.add(name)
            todo += inputs_of(spec, name)
    return found


def watermark_of(spec: PipelineSpec, name: str) -> tuple[str, WatermarkSpec] | None:
    """The watermark the rows of dataset ``name`` carry, with its path: its own, else the one
    of the streamed dataset it reads."""
    reached = streamed(spec)
    while name in reached:
        block = spec.sources.get(name) or spec.transforms[name]
        if block.watermark is not None:
            section = "sources" if name in spec.sources else "transforms"
            return f"{section}.{name}.watermark", block.watermark
        name = next((i for i in inputs_of(spec, name) if i in reached), "")
    return None
