"""Options of the ``prometheus`` reporter (an attrs class, structured strictly by the core)."""

from __future__ import annotations

import attrs

from etl_core import Secret, positive


@attrs.frozen
class PrometheusOptions:
    #: the Pushgateway's URL, e.g. ``http://pushgateway:9091``
    pushgateway: str
    #: the ``job`` label of every pushed series
    job: str = "etl"
    #: add ``run_id`` to the grouping key: one group per run instead of one per pipeline
    #: (groups then pile up on the gateway: delete them from outside)
    group_by_run: bool = False
    #: seconds to wait for the gateway
    timeout: float = attrs.field(default=10.0, validator=positive)
    #: HTTP basic auth of the gateway, e.g. from ``credentials:``
    username: Secret | None = None
    password: Secret | None = None
