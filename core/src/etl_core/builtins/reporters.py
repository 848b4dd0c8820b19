"""The built-in ``log`` metrics reporter: one JSON line per dataset stage and one per run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs

from etl_core.api import MetricsReporter, RunMetrics


@attrs.frozen
class LogOptions:
    #: append to this file (relative to the working directory); standard error when unset
    path: str | None = None


class LogReporter(MetricsReporter):
    """Write the run's metrics as JSON lines."""

    name = "log"
    Options = LogOptions

    def report(self, metrics: RunMetrics, options: LogOptions) -> None:
        run = metrics.to_dict()
        stages = run.pop("stages")
        head = {"pipeline": metrics.pipeline, "run_id": metrics.run_id}
        lines = [json.dumps({"event": "stage", **head, **stage}) for stage in stages]
        lines.append(json.dumps({"event": "run", **run}, default=str))
        text = "\n".join(lines) + "\n"
        if options.path is None:
            sys.stderr.write(text)
            return
        path = Path(options.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(text)
