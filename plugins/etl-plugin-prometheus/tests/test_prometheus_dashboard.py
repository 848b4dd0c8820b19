"""The Grafana dashboard in docs/ queries only metrics the reporter emits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from etl_core import METRIC_NAMES

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-etl.json"
#: PromQL words that look like metric names but are functions, keywords or label names
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}


def queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def test_the_dashboard_parses_and_queries_only_emitted_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    found = list(queries(dashboard))
    assert found, "the dashboard has no queries"
    used = {
        word
        for query in found
        for word in re.findall(r"\betl_[a-z_]+\b", re.sub(r'"[^"]*"', "", query))
    } - _NOT_METRICS
    assert used, "no etl metric is queried"
    assert used <= METRIC_NAMES, f"not emitted by the reporter: {sorted(used - METRIC_NAMES)}"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
