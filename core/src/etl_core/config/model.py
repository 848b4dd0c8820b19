"""The pipeline model: what a pipeline file holds (``PipelineSpec`` and its sections) and what
binding makes of it (``BoundPipeline``: each block's component resolved, its options structured).

Plain attrs classes, structured by the one cattrs converter of :mod:`etl_core.options`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from etl_core.config.plan import Plan
from etl_core.config.schema import SchemaColumn
from etl_core.options import ValueProblem, duration, one_of, positive

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: no name ending in a newline


@attrs.frozen
class EngineSpec:
    master: str | None = None
    remote: str | None = None
    conf: dict[str, str] = attrs.field(factory=dict)
    driver_memory: str = "2g"
    #: count every dataset, not only sources, sinks' inputs and datasets that route rows
    count_every_dataset: bool = False
    #: map the JVM class-data archive of ``etl engine prepare`` when there is one
    class_data_sharing: bool = True


@attrs.frozen
class RetrySpec:
    attempts: int = attrs.field(default=3, validator=positive)
    backoff: str = attrs.field(
        default="exponential", validator=one_of("exponential", "fixed", "none")
    )
    initial: str | float = attrs.field(default="1s", validator=duration)
    max: str | float = attrs.field(default="60s", validator=duration)
    jitter: bool = True


@attrs.frozen
class BreakerSpec:
    failure_threshold: int = attrs.field(default=5, validator=positive)
    reset_after: str | float = attrs.field(default="30s", validator=duration)


@attrs.frozen
class Block:
    """A component block: its ``type``, the core-owned keys, and the component's raw options."""

    type: str
    options: dict[str, Any] = attrs.field(factory=dict)
    credentials: str | None = None
    retry: RetrySpec | None = None
    circuit_breaker: BreakerSpec | None = None


@attrs.frozen
class WatermarkSpec:
    """Event time in a stream: ``column`` (a timestamp) runs at most ``delay`` behind the
    newest event seen; rows older than that are ``late``: dropped (counted) or dead-lettered
    by the stateful transforms downstream (windows, deduplication)."""

    column: str
    delay: str | float = attrs.field(validator=duration)
    late: str = attrs.field(default="drop", validator=one_of("drop", "dead_letter"))


@attrs.frozen
class SourceSpec(Block):
    incremental: dict[str, Any] | None = None
    read_schema: str | list[dict[str, Any]] | None = None
    #: in a streaming pipeline: read as a table, anew for each micro-batch (a lookup to join)
    static: bool = False
    #: in a streaming pipeline: the event time of the streamed source's rows
    watermark: WatermarkSpec | None = None


@attrs.frozen
class TransformSpec(Block):
    inputs: list[str] = attrs.field(factory=list)
    #: in a streaming pipeline: the event time of this transform's output rows
    watermark: WatermarkSpec | None = None


@attrs.frozen
class SinkSpec(Block):
    input: str = ""
    on_reject: str = attrs.field(default="fail", validator=one_of("fail", "dead_letter"))
    #: the load mode; ``None`` means the loader's first declared mode (checked at bind time)
    mode: str | None = None
    key: list[str] | None = None


@attrs.frozen
class CredentialSpec:
    provider: str
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ValidateSpec:
    """Accepted structurally here; the validation issue gives rules their meaning."""

    schema: str | list[dict[str, Any]] | None = None
    mode: str = attrs.field(default="strict", validator=one_of("strict", "additive", "coerce"))
    rules: list[dict[str, Any]] = attrs.field(factory=list)
    on_failure: str = attrs.field(
        default="abort", validator=one_of("abort", "continue", "quarantine")
    )


def _not_negative(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise ValueProblem(f"cannot be negative, got {value!r}", attribute.name)


def _ratio(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= 1:
        raise ValueProblem(
            f"must be a fraction from 0 to 1 (0.01 is 1%), got {value!r}", attribute.name
        )


@attrs.frozen
class ErrorsSpec:
    retry: RetrySpec | None = None
    circuit_breaker: BreakerSpec | None = None
    dead_letter: Block | None = None
    max_bad_rows: int | None = attrs.field(default=None, validator=_not_negative)
    max_bad_ratio: float | None = attrs.field(default=None, validator=_ratio)


@attrs.frozen
class TracingSpec:
    exporter: str = attrs.field(default="otlp", validator=one_of("otlp", "console"))
    endpoint: str | None = None


@attrs.frozen
class TriggerSpec:
    """When a streaming pipeline starts a micro-batch: every ``processing_time`` (e.g.
    ``10s``), or ``available_now`` (what is there now, in batches, then stop); neither: as
    soon as the previous batch ends."""

    processing_time: str | float | None = attrs.field(
        default=None, validator=attrs.validators.optional(duration)
    )
    available_now: bool = False

    def __attrs_post_init__(self) -> None:
        if self.processing_time is not None and self.available_now:
            raise ValueProblem(
                "give `processing_time` or `available_now: true`, not both", "available_now"
            )


@attrs.frozen
class PipelineSpec:
    name: str
    version: int = 1
    execution: str = attrs.field(default="batch", validator=one_of("batch", "streaming"))
    #: streaming only: when micro-batches start
    trigger: TriggerSpec | None = None
    #: streaming only: the query's checkpoint folder (default ``.etl/checkpoints/<name>``)
    checkpoint: str | None = None
    #: streaming only: what stateful transforms emit each batch: ``append`` (a window once,
    #: when the watermark passes its end) or ``update`` (every window the batch changed)
    output_mode: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(one_of("append", "update"))
    )
    engine: EngineSpec = attrs.field(factory=EngineSpec)
    credentials: dict[str, CredentialSpec] = attrs.field(factory=dict)
    sources: dict[str, SourceSpec] = attrs.field(factory=dict)
    transforms: dict[str, TransformSpec] = attrs.field(factory=dict)
    validate: dict[str, ValidateSpec] = attrs.field(factory=dict)
    sinks: dict[str, SinkSpec] = attrs.field(factory=dict)
    errors: ErrorsSpec = attrs.field(factory=ErrorsSpec)
    metrics: list[Block] = attrs.field(factory=list)
    tracing: TracingSpec | None = None
    state: Block = attrs.field(factory=lambda: Block(type="file"))
    base_dir: Path = attrs.field(factory=Path.cwd)
    source: str | None = None
    #: blocks whose core keys were wrong: kept by name for planning, skipped by ``bind``
    broken: frozenset[str] = frozenset()


@attrs.frozen
class Bound:
    """A component block with its type resolved and its options structured."""

    path: str
    name: str
    component: type[Any]
    options: Any
    block: Block | None = None


@attrs.frozen
class BoundPipeline:
    spec: PipelineSpec
    sources: dict[str, Bound]
    transforms: dict[str, Bound]
    sinks: dict[str, Bound]
    credentials: dict[str, Bound]
    dead_letter: Bound | None
    metrics: list[Bound]
    state: Bound
    plan: Plan
    validations: dict[str, BoundValidation] = attrs.field(factory=dict)


@attrs.frozen
class BoundRule:
    """One quality rule of a dataset, its validator resolved and options structured."""

    path: str
    name: str
    severity: str
    component: type[Any]
    options: Any


@attrs.frozen
class BoundValidation:
    dataset: str
    schema: list[SchemaColumn] | None  # when declared
    mode: str
    on_failure: str
    rules: list[BoundRule]
