"""Dead letters (DESIGN §7): one record per rejected row, and what a sink's publish refused.

A public contract: plugins build dead-letter records and return refused rows with these.
"""

from __future__ import annotations

import datetime as dt

import attrs

__all__ = ["DEAD_LETTER_DDL", "DeadLetterError", "DeadLetterRecord", "Rejected"]


@attrs.frozen
class Rejected:
    """A row the target refused while publishing: the row as JSON and the database's reason."""

    row: str
    message: str
    #: what refused it, e.g. the constraint's name
    rule: str = "load"


@attrs.frozen
class DeadLetterError:
    rule: str
    message: str
    severity: str = "error"


@attrs.frozen
class DeadLetterRecord:
    """One rejected row (DESIGN §7). ``row`` is the original row as JSON, secrets redacted."""

    pipeline: str
    run_id: str
    stage: str
    component: str
    dataset: str
    errors: tuple[DeadLetterError, ...]
    timestamp: dt.datetime
    source_position: str | None
    row: str


#: The Spark schema of a DataFrame of dead-letter records.
DEAD_LETTER_DDL = (
    "pipeline STRING, run_id STRING, stage STRING, component STRING, dataset STRING, "
    "errors ARRAY<STRUCT<rule: STRING, message: STRING, severity: STRING>>, "
    "timestamp TIMESTAMP, source_position STRING, row STRING"
)
