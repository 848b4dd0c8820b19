"""The pipeline file, from text to a bound pipeline: :mod:`~etl_core.config.load` (file → spec),
:mod:`~etl_core.config.bind` (spec + plugin host → bound pipeline), :mod:`~etl_core.config.plan`
(the DAG of datasets), :mod:`~etl_core.config.schema` (schema declarations, without Spark).

:func:`check` runs load and bind and raises one :class:`~etl_core.errors.ConfigError` carrying
every issue; it is what ``etl validate``, ``explain``, ``run`` and ``clean`` call first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_core.config.bind import bind
from etl_core.config.convert import allow_plaintext
from etl_core.config.load import load, read_file
from etl_core.config.model import (
    Block,
    Bound,
    BoundPipeline,
    BoundRule,
    BoundValidation,
    BreakerSpec,
    CredentialSpec,
    EngineSpec,
    ErrorsSpec,
    PipelineSpec,
    RetrySpec,
    SinkSpec,
    SourceSpec,
    TracingSpec,
    TransformSpec,
    TriggerSpec,
    ValidateSpec,
    WatermarkSpec,
)
from etl_core.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from etl_core.plugins import PluginHost

__all__ = [
    "Block",
    "Bound",
    "BoundPipeline",
    "BoundRule",
    "BoundValidation",
    "BreakerSpec",
    "ConfigError",
    "ConfigIssue",
    "CredentialSpec",
    "EngineSpec",
    "ErrorsSpec",
    "PipelineSpec",
    "RetrySpec",
    "SinkSpec",
    "SourceSpec",
    "TracingSpec",
    "TransformSpec",
    "TriggerSpec",
    "ValidateSpec",
    "WatermarkSpec",
    "bind",
    "check",
    "load",
    "read_file",
]


def check(
    path: str | Path | None = None,
    *,
    host: PluginHost,
    data: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    base_dir: Path | None = None,
    allow_plaintext_secrets: bool = False,
) -> BoundPipeline:
    """Load and bind, reporting every mistake found in either step together."""
    issues: list[ConfigIssue] = []
    spec = load(path, data=data, overrides=overrides, base_dir=base_dir, issues=issues)
    token = allow_plaintext.set(allow_plaintext_secrets)
    try:
        return bind(spec, host, issues)
    finally:
        allow_plaintext.reset(token)
