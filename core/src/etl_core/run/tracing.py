"""OpenTelemetry spans for a run and each of its dataset stages (``tracing:`` in the pipeline).

Off unless configured: without ``tracing:`` the runner never imports this module's
OpenTelemetry code (``pip install etl-core[tracing]`` adds it). Each run gets its own
``TracerProvider``; the process-global provider is left alone.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from etl_core.errors import ConfigError, ConfigIssue
from etl_core.markers import hookimpl

if TYPE_CHECKING:
    from etl_core.api import RunMetrics, StageMetrics
    from etl_core.config.model import TracingSpec

__all__ = ["RunTrace", "start_run_trace"]

INSTRUMENTATION = "etl_core"


class RunTrace:
    """The spans of one run: the run span is open from start to :meth:`finish`."""

    def __init__(self, provider: Any, pipeline: str, run_id: str, run_key: str):
        self._provider = provider
        self._tracer = provider.get_tracer(INSTRUMENTATION)
        self._pipeline = pipeline
        self._span = self._tracer.start_span(
            f"etl run {pipeline}",
            attributes={"etl.pipeline": pipeline, "etl.run_id": run_id, "etl.run_key": run_key},
        )
        #: (start, end) in ns since the epoch of each stage timed by the runner, by id
        self._windows: dict[int, tuple[int, int]] = {}

    @hookimpl
    def etl_stage_finished(self, stage: StageMetrics) -> None:
        """Remember when the Spark action that computed ``stage`` ran: it just ended, and took
        ``stage.duration_s`` (stages without one ran inside the timed actions)."""
        if stage.duration_s is not None:
            ended = time.time_ns()
            self._windows[id(stage)] = (ended - int(stage.duration_s * 1e9), ended)

    @hookimpl
    def etl_run_finished(self, metrics: RunMetrics) -> None:
        """Export the spans when the run ends (failures are the host's to log)."""
        self.finish(metrics)

    def finish(self, metrics: RunMetrics) -> None:
        """One child span per dataset stage, then end the run span and flush the exporter.

        Extract and transform stages are lazy: Spark computes them inside the load actions, so
        their spans cover the window of those actions."""
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        failed = metrics.status != "succeeded"
        now = time.time_ns()
        windows = list(self._windows.values())
        computed = (min(w[0] for w in windows), max(w[1] for w in windows)) if windows else None
        parent = trace.set_span_in_context(self._span)
        for stage in metrics.stages:
            start, end = self._windows.get(id(stage)) or computed or (now, now)
            outcome = "failed" if failed else "succeeded"
            if stage.stage == "load" and not failed:
                outcome = "published" if stage.dataset in metrics.published else "staged"
            attributes: dict[str, Any] = {
                "etl.pipeline": metrics.pipeline,
                "etl.dataset": stage.dataset,
                "etl.stage": stage.stage,
                "etl.component": stage.component,
                "etl.outcome": outcome,
                "etl.rows_rejected": stage.rows_rejected,
            }
            if stage.rows_out is not None:
                attributes["etl.rows"] = stage.rows_out
            span = self._tracer.start_span(
                f"{stage.stage} {stage.dataset}",
                context=parent,
                start_time=start,
                attributes=attributes,
            )
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end)
        self._span.set_attribute("etl.outcome", metrics.status)
        self._span.set_attribute("etl.rows", sum(s.rows_out or 0 for s in metrics.stages))
        self._span.set_attribute("etl.dead_letters", metrics.dead_letters)
        if failed:
            self._span.set_status(Status(StatusCode.ERROR, metrics.error or metrics.status))
        self._span.end()
        self._provider.shutdown()  # flushes the exporter


def start_run_trace(
    spec: TracingSpec, pipeline: str, run_id: str, run_key: str, *, exporter: Any = None
) -> RunTrace:
    """Open the run span. ``exporter`` (a ``SpanExporter``, e.g. the SDK's
    ``InMemorySpanExporter`` in tests) replaces the one ``spec`` configures."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ConfigError(
            ConfigIssue(
                "tracing",
                "tracing is configured but OpenTelemetry is not installed",
                "pip install 'etl-core[tracing]'",
            )
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": f"etl:{pipeline}"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif spec.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # without an endpoint, the exporter reads OTEL_EXPORTER_OTLP_* as usual
        otlp = OTLPSpanExporter(endpoint=spec.endpoint) if spec.endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(otlp))
    return RunTrace(provider, pipeline, run_id, run_key)
