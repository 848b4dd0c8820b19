"""Helpers for the attrs ``Options`` classes of components (a public contract for plugins):
the validators ``one_of``, ``positive`` and ``duration``, :func:`parse_duration`, and
:class:`ValueProblem`, the error a validator or ``__attrs_post_init__`` raises so that the core
reports it at the option's config path.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["ValueProblem", "duration", "one_of", "parse_duration", "positive"]


class ValueProblem(ValueError):
    """A value is wrong; the message says what is expected.

    ``key`` names the field when the problem is raised by an attrs validator, which runs
    after cattrs has structured every field and so carries no path of its own.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _key(attribute: attrs.Attribute[Any] | None) -> str | None:
    return attribute.name if attribute is not None else None


def one_of(*choices: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """attrs validator: the value is one of ``choices`` (with a did-you-mean)."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueProblem(
                f"{value!r} is not one of {', '.join(choices)}{hint}", _key(attribute)
            )

    check.choices = choices  # type: ignore[attr-defined]  # shown by `etl plugins show`
    return check


def positive(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueProblem(f"must be greater than 0, got {value!r}", _key(attribute))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float) -> float:
    """``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"`` or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueProblem(f"{value!r} is not a duration; write e.g. 500ms, 30s, 2m or 1h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def duration(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator for duration fields."""
    try:
        seconds = parse_duration(value)
    except ValueProblem as exc:
        raise ValueProblem(str(exc), _key(attribute)) from None
    if seconds < 0:
        raise ValueProblem(f"a duration cannot be negative, got {value!r}", _key(attribute))
