"""Preflight (DESIGN §4): before Spark starts, resolve every block's credentials and let each
component check its endpoint, inputs and targets, so that an unset variable, a wrong port and
a missing file are all reported at once, in about a second, instead of one by one after the
session started."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from etl_core.api import Preflight
from etl_core.config.model import Bound, BoundPipeline, SinkSpec
from etl_core.errors import ConfigIssue, EtlError, PreflightFailed, SecretError, short_error
from etl_core.run.credentials import Secrets

if TYPE_CHECKING:
    from etl_core.plugins import PluginHost


def blocks(bound: BoundPipeline) -> list[Bound]:
    """The blocks whose components may talk to an endpoint: sources, transforms, sinks and the
    dead-letter sink."""
    items = [*bound.sources.values(), *bound.transforms.values(), *bound.sinks.values()]
    return items + ([bound.dead_letter] if bound.dead_letter is not None else [])


def preflight(bound: BoundPipeline, secrets: Secrets) -> float:
    """Resolve every block's credentials, then call each component's ``preflight`` (all at
    once, one thread each; each client's own connect timeout bounds a check). Raises
    :class:`PreflightFailed` listing every problem with its block's path; returns the seconds
    it took."""
    started = time.monotonic()
    items = blocks(bound)
    problems: dict[str, list[str]] = {item.path: [] for item in items}  # in the file's order
    checks: list[tuple[Bound, Any]] = []
    for item in items:
        try:
            checks.append((item, secrets.options_for(item)))
        except SecretError as exc:
            problems[item.path].append(str(exc))
    with ThreadPoolExecutor(max_workers=max(1, min(len(checks), 8))) as pool:
        futures = [(item, pool.submit(_check, bound, item, opts)) for item, opts in checks]
        for item, future in futures:
            message = future.result()
            if message:
                problems[item.path].append(secrets.redact(message))
    issues = _issues(problems)
    if issues:
        raise PreflightFailed(issues)
    return time.monotonic() - started


def preflight_alone(bound: BoundPipeline, host: PluginHost) -> float:
    """:func:`preflight` with credentials of its own, released after (``etl validate
    --connect``, the suites' preflight case)."""
    secrets = Secrets(bound, host)
    try:
        return preflight(bound, secrets)
    finally:
        secrets.close()


def _check(bound: BoundPipeline, item: Bound, options: Any) -> str | None:
    """The component's own check of one block: ``None``, or what is wrong."""
    block = item.block
    mode: str | None = None
    key: tuple[str, ...] = ()
    if isinstance(block, SinkSpec):
        modes = getattr(item.component, "modes", ())
        mode, key = block.mode or (modes[0] if modes else None), tuple(block.key or ())
    ctx = Preflight(
        pipeline=bound.spec.name,
        base_dir=bound.spec.base_dir,
        dataset=item.name,
        component=item.component.name,
        mode=mode,
        key=key,
        streaming=bound.spec.execution == "streaming",
    )
    try:
        item.component().preflight(ctx, options)
    except EtlError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not hide the other problems
        return short_error(exc)
    return None


def _issues(problems: dict[str, list[str]]) -> list[ConfigIssue]:
    """One issue per distinct message: a credentials entry shared by two blocks that cannot be
    resolved is reported once, under the first block."""
    seen: set[str] = set()
    issues = []
    for path, messages in problems.items():
        for message in messages:
            if message not in seen:
                seen.add(message)
                issues.append(ConfigIssue(path, message))
    return issues
