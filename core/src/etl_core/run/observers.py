"""Observers a run registers with the plugin host for its lifetime: they hang on the lifecycle
hooks (DESIGN §3) like any plugin, and the host keeps their failures from breaking the run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from etl_core.api import RunMetrics
from etl_core.config.model import Bound
from etl_core.markers import hookimpl
from etl_core.run.credentials import Secrets

log = logging.getLogger("etl.run")


class MetricsReporters:
    """The pipeline's ``metrics:`` reporters, each given the run's metrics when it finishes."""

    def __init__(self, reporters: Sequence[Bound], secrets: Secrets):
        self.reporters, self.secrets = reporters, secrets

    @hookimpl
    def etl_run_finished(self, metrics: RunMetrics) -> None:
        for item in self.reporters:
            try:
                item.component().report(metrics, self.secrets.options_for(item))
            except Exception as exc:  # noqa: BLE001 - a reporter never fails the run
                message = self.secrets.redact(str(exc))
                log.warning("etl: metrics reporter %s failed: %s", item.component.name, message)
