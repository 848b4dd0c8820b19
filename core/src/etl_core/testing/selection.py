"""Which suite cases apply to a component: a case marked ``applies(capability=...)`` or
``applies(mode=...)`` runs only for a component that declares that capability (``capabilities``)
or load mode (``Loader.modes``).

Two places decide, so a case never runs against a component it does not apply to:

- at collection, the pytest plugin looks the component up among the installed plugins and
  deselects the cases that do not apply: they count as ``deselected``, not as skipped, and the
  summary says which and why (``etl conformance: N cases not applicable``);
- at run time, an autouse fixture of every suite asks the suite's own ``conformance_host``
  (a suite may serve a component that no entry point registers) and skips, saying why.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

__all__ = ["applies", "not_applicable"]

MARKER = "etl_applies"


def applies(
    *, capability: str | tuple[str, ...] | None = None, mode: str | None = None
) -> pytest.MarkDecorator:
    """Mark a suite case that applies only to components declaring ``capability`` (or each of
    several) or, for loaders, the load mode ``mode``."""
    return getattr(pytest.mark, MARKER)(capability=capability, mode=mode)


def not_applicable(component: type[Any], marker: pytest.Mark | None) -> str | None:
    """Why a case marked with ``marker`` does not apply to ``component``, or ``None``."""
    if marker is None:
        return None
    capability, mode = marker.kwargs.get("capability"), marker.kwargs.get("mode")
    for needed in (capability,) if isinstance(capability, str) else capability or ():
        if needed not in getattr(component, "capabilities", ()):
            return f"{component.name} does not declare the capability {needed!r}"
    if mode and mode not in getattr(component, "modes", ()):
        return f"{component.name} does not declare the load mode {mode!r}"
    return None


@functools.cache
def _installed_host() -> Any:
    from etl_core.plugins import get_plugin_host

    return get_plugin_host()


def _component_of(item: pytest.Item) -> type[Any] | None:
    """The component a suite case runs against, found among the installed plugins."""
    cls = getattr(item, "cls", None)
    kind = getattr(cls, "component_kind", None)
    name = getattr(cls, "component", None)
    if not (kind and name):
        return None
    try:
        return _installed_host().component(kind, name)
    except Exception:  # noqa: BLE001 - not installed: the run-time check decides
        return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(capability=None, mode=None): a conformance case that runs only for "
        "components declaring that capability or load mode",
    )


_DROPPED = pytest.StashKey[dict[str, int]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    reasons = config.stash.setdefault(_DROPPED, {})
    for item in items:
        marker = item.get_closest_marker(MARKER)
        component = _component_of(item) if marker else None
        reason = not_applicable(component, marker) if component else None
        (drop if reason else keep).append(item)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    reasons = config.stash.get(_DROPPED, {})
    if reasons:
        total = sum(reasons.values())
        cases = "case" if total == 1 else "cases"
        terminalreporter.write_line(f"etl conformance: {total} {cases} not applicable:")
        for reason, count in sorted(reasons.items()):
            terminalreporter.write_line(f"  {count} x {reason}")
