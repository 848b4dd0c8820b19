"""Typed errors. Every error a user can cause names where it happened and how to fix it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs


class EtlError(Exception):
    """Base of every error etl raises on purpose."""

    exit_code = 1


@attrs.frozen
class ConfigIssue:
    """One problem in a pipeline file: where (``sources.orders.partitions``), what, and the fix."""

    path: str
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text}\n    fix: {self.fix}" if self.fix else text


class ConfigError(EtlError):
    """The pipeline file is wrong. Carries every issue found in one pass, each with its path."""

    exit_code = 2

    def __init__(self, issues: ConfigIssue | Sequence[ConfigIssue], *, source: str | None = None):
        self.issues: tuple[ConfigIssue, ...] = (
            (issues,) if isinstance(issues, ConfigIssue) else tuple(issues)
        )
        self.source = source
        super().__init__(self._render())

    @classmethod
    def at(cls, path: str, message: str, fix: str | None = None) -> ConfigError:
        return cls(ConfigIssue(path, message, fix))

    @property
    def path(self) -> str:
        return self.issues[0].path

    def _render(self) -> str:
        return render_issues(self.issues, "in the pipeline", self.source)


def render_issues(issues: Sequence[ConfigIssue], where: str, source: str | None = None) -> str:
    """One issue on its line; several as a list under ``N problems <where>:``."""
    head = f"{source}: " if source else ""
    if len(issues) == 1:
        return head + str(issues[0])
    body = "\n".join(f"  - {issue}".replace("\n", "\n  ") for issue in issues)
    return f"{head}{len(issues)} problems {where}:\n{body}"


def raise_if_any(issues: Iterable[ConfigIssue], *, source: str | None = None) -> None:
    collected = list(issues)
    if collected:
        raise ConfigError(collected, source=source)


class PluginError(EtlError):
    """A plugin could not be loaded or registered something invalid."""


class UnknownComponentError(PluginError, KeyError):
    """No component of that kind and name is registered."""

    exit_code = 2

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        known_text = ", ".join(self.known) or "none"
        message = f"unknown {kind} type {name!r} (known: {known_text})"
        self.hint = hint
        super().__init__(message + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SecretError(EtlError):
    """A secret reference could not be resolved. Never carries the secret's value."""


class ValidationFailed(EtlError):
    """Data broke an error-severity rule of a dataset whose outcome is ``abort``."""


class LoadError(EtlError):
    """A sink could not stage, publish or discard its rows."""


class RunFailed(EtlError):
    """The run failed; ``published`` names the sinks that had already published."""

    def __init__(self, message: str, *, published: Sequence[str] = ()):
        self.published = tuple(published)
        super().__init__(message)


class PreflightFailed(EtlError):
    """Checks before Spark starts (credentials, connections, input paths, targets) found
    problems; nothing ran. Carries every problem found, each with its config path."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = tuple(issues)
        super().__init__(render_issues(self.issues, "found by the preflight checks"))


class RunLocked(EtlError):
    """Another live process holds this run's lock."""


class TransientError(EtlError):
    """Retrying may help: connection refused, timeouts, throttling, serialization failures."""


class PermanentError(EtlError):
    """Retrying won't help: syntax, authentication, a missing object."""


def short_error(exc: BaseException) -> str:
    """One readable line or three from a Spark/Py4J error, without JVM stack traces."""
    text = str(exc)
    text = text.split("\n\nJVM stacktrace:")[0]
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        frames = [line for line in lines if re.match(r"^\w*(Error|Exception)\b", line)]
        text = frames[-1] if frames else lines[-1]
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("\tat ")]
    return "\n".join(lines[:3]) or type(exc).__name__


def task_error(exc: BaseException) -> EtlError | None:
    """The typed error a connector raised inside a Spark task (Spark hands it back as the text
    of a Python traceback inside a Java one), rebuilt with its type and message; ``None`` when
    the failure carries none."""
    found = re.search(r"etl_core\.errors\.(\w+): (.+)", str(exc))
    if found is None:
        return None
    kind = {c.__name__: c for c in (TransientError, PermanentError, LoadError, SecretError)}
    return kind.get(found[1], EtlError)(found[2].strip())
