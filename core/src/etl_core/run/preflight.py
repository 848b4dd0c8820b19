"""Preflight (DESIGN §4): before Spark starts, resolve every block's credentials and let each
component check its endpoint, inputs and targets, so that an unset variable, a wrong port and
a missing file are all reported at once, in about a second, instead of one by one after the
session started."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from etl_core.api import Preflight
from etl_core.config.model import Bound, BoundPipeline, SinkSpec
from etl_core.errors import ConfigIssue, EtlError, PreflightFailed, SecretError, short_error
from etl_core.run.credentials import Secrets

#: a check that has not answered by then is reported as such (connect timeouts are shorter)
TIMEOUT_S = 30.0


def blocks(bound: BoundPipeline) -> list[Bound]:
    """The blocks whose components may talk to an endpoint: sources, transforms, sinks and the
    dead-letter sink."""
    items = [*bound.sources.values(), *bound.transforms.values(), *bound.sinks.values()]
    return items + ([bound.dead_letter] if bound.dead_letter is not None else [])


def preflight(bound: BoundPipeline, secrets: Secrets, *, connect: bool = True) -> float:
    """Resolve every block's credentials and, with ``connect``, call each component's
    ``preflight`` (all at once, one thread each). Raises :class:`PreflightFailed` listing every
    problem with its block's path; returns the seconds it took."""
    started = time.monotonic()
    problems: dict[str, list[str]] = {}
    checks: list[tuple[Bound, Any]] = []
    for item in blocks(bound):
        try:
            checks.append((item, secrets.options_for(item)))
        except SecretError as exc:
            problems.setdefault(item.path, []).append(str(exc))
    if connect and checks:
        with ThreadPoolExecutor(max_workers=min(len(checks), 8)) as pool:
            futures = [(item, pool.submit(_check, bound, item, opts)) for item, opts in checks]
            for item, future in futures:
                try:
                    message = future.result(timeout=TIMEOUT_S)
                except TimeoutError:
                    message = f"no answer within {TIMEOUT_S:.0f} s"
                if message:
                    problems.setdefault(item.path, []).append(secrets.redact(message))
    issues = _issues({i.path: problems[i.path] for i in blocks(bound) if i.path in problems})
    if issues:
        raise PreflightFailed(issues)
    return time.monotonic() - started


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
