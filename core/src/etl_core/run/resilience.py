"""Retries and circuit breakers around the runner's connector calls (DESIGN §7).

The runner calls :func:`guarded` for each driver-side connector call: an extractor's or
transformer's build call, ``Loader.stage`` and ``Loader.publish`` — never around a whole run.

- Retries (tenacity) repeat only :class:`TransientError`; a :class:`PermanentError` or any
  other exception fails at once. ``backoff: exponential`` waits ``initial * 2**(n-1)`` capped
  at ``max``, plus (``jitter: true``) a uniform ``0..initial`` spread so that pipelines that
  failed together do not retry together; ``fixed`` waits ``initial``; ``none`` does not wait.
- Circuit breakers (pybreaker) are kept per endpoint in this process: a component's
  ``endpoint(options)`` (e.g. ``db.example:5432``) or, when it declares none, its block
  (``<pipeline>/sinks.out``). Only transient failures count; after ``failure_threshold`` of
  them in a row the breaker opens and later calls fail at once with :class:`CircuitOpenError`
  until ``reset_after`` has passed; then one probe call is let through (half-open): success
  closes the breaker, failure opens it again.

Breakers live in the driver process. Executor tasks never see them: a task's failure reaches
the driver as the stage (or publish) call failing, which counts once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pybreaker
import tenacity

from etl_core.config.model import BreakerSpec, RetrySpec
from etl_core.errors import EtlError, TransientError
from etl_core.options import parse_duration

T = TypeVar("T")

__all__ = [
    "CircuitOpenError",
    "RetryPolicy",
    "breaker",
    "guarded",
    "reset_breakers",
    "retry_policy",
]


class CircuitOpenError(EtlError):
    """The endpoint's circuit breaker is open: the call was not made."""


@attrs.frozen
class RetryPolicy:
    """How many attempts a call gets and how long to wait before attempt ``n + 1``."""

    attempts: int = 1
    backoff: str = "none"
    initial_s: float = 0.0
    max_s: float = 0.0
    jitter: bool = False

    def wait(self) -> Callable[[tenacity.RetryCallState], float]:
        """Seconds to wait after failed attempt ``n`` (``retry_state.attempt_number``)."""

        def wait(state: tenacity.RetryCallState) -> float:
            if self.backoff == "none":
                return 0.0
            if self.backoff == "fixed":
                return min(self.initial_s, self.max_s)
            base = self.initial_s * 2 ** (state.attempt_number - 1)
            spread = random.uniform(0, self.initial_s) if self.jitter else 0.0  # noqa: S311
            return min(base + spread, self.max_s)

        return wait


#: no retry: what a block gets when neither it nor ``errors.retry`` sets ``retry``
NO_RETRY = RetryPolicy()


def retry_policy(spec: RetrySpec | None) -> RetryPolicy:
    if spec is None:
        return NO_RETRY
    return RetryPolicy(
        attempts=spec.attempts,
        backoff=spec.backoff,
        initial_s=parse_duration(spec.initial),
        max_s=parse_duration(spec.max),
        jitter=spec.jitter,
    )


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def _not_transient(exc: BaseException) -> bool:
    return not isinstance(exc, TransientError)


def breaker(endpoint: str, spec: BreakerSpec) -> pybreaker.CircuitBreaker:
    """This process's breaker for ``endpoint``, its settings updated to ``spec``."""
    with _breakers_lock:
        found = _breakers.get(endpoint)
        if found is None:
            found = _breakers[endpoint] = pybreaker.CircuitBreaker(
                fail_max=spec.failure_threshold,
                reset_timeout=parse_duration(spec.reset_after),
                exclude=[_not_transient],  # only transient failures say the endpoint is down
                name=endpoint,
                throw_new_error_on_trip=False,  # the tripping call raises its own error
            )
        else:
            found.fail_max = spec.failure_threshold
            found.reset_timeout = parse_duration(spec.reset_after)
        return found


def reset_breakers() -> None:
    """Forget every breaker of this process (tests; a long-lived process after an outage)."""
    with _breakers_lock:
        _breakers.clear()


OnRetry = Callable[[int, int, float, BaseException], None]


def guarded(
    call: Callable[[], T],
    *,
    name: str,
    retry: RetryPolicy = NO_RETRY,
    endpoint: str | None = None,
    circuit: BreakerSpec | None = None,
    on_retry: OnRetry | None = None,
    on_state: Callable[[str, str], None] | None = None,
) -> T:
    """Call ``call`` through the endpoint's breaker (when ``circuit`` is set), retrying
    transient failures by ``retry``. ``on_retry(next_attempt, attempts, wait_s, error)`` runs
    before each wait; ``on_state(endpoint, state)`` after each attempt."""
    cb = breaker(endpoint or name, circuit) if circuit is not None else None

    def attempt() -> T:
        if cb is None:
            return call()
        try:
            return cb.call(call)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpenError(
                f"{name}: the circuit breaker for {cb.name} is open after "
                f"{cb.fail_max} transient failure(s) in a row; not calling it until "
                f"{cb.reset_timeout:g}s after it opened"
            ) from None
        finally:
            if on_state is not None:
                on_state(cb.name or name, cb.current_state)

    if retry.attempts <= 1:
        return attempt()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            assert error is not None
            on_retry(state.attempt_number + 1, retry.attempts, wait, error)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retry.attempts),
        wait=retry.wait(),
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(attempt)


def block_settings(block: Any, errors: Any) -> tuple[RetryPolicy, BreakerSpec | None]:
    """A block's retry policy and breaker settings: its own keys over ``errors:`` defaults."""
    retry = getattr(block, "retry", None) or getattr(errors, "retry", None)
    circuit = getattr(block, "circuit_breaker", None) or getattr(errors, "circuit_breaker", None)
    return retry_policy(retry), circuit
