"""Retries and circuit breakers: the policy on its own, then fault injection through real runs."""

from __future__ import annotations

import logging
import time
from collections import Counter

import attrs
import pytest
import tenacity

from etl_core import Extractor, Loader, PermanentError, Secret, Staged, TransientError, hookimpl
from etl_core import config as config_module
from etl_core.config import BreakerSpec, RetrySpec
from etl_core.errors import ConfigError, RunFailed
from etl_core.plugins import get_plugin_host
from etl_core.run.resilience import (
    CircuitOpenError,
    _breakers,
    block_settings,
    guarded,
    reset_breakers,
    retry_policy,
)


@pytest.fixture(autouse=True)
def fresh_breakers():
    reset_breakers()
    yield
    reset_breakers()


# --- the policy on its own (no Spark) -------------------------------------------------------


def waits(policy, attempts: int) -> list[float]:
    wait = policy.wait()
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    found = []
    for n in range(1, attempts + 1):
        state.attempt_number = n
        found.append(wait(state))
    return found


def test_policy_from_spec():
    assert retry_policy(None).attempts == 1
    policy = retry_policy(RetrySpec(attempts=5, initial="100ms", max="1s", jitter=False))
    assert (policy.attempts, policy.backoff, policy.initial_s, policy.max_s) == (
        5,
        "exponential",
        0.1,
        1.0,
    )
    assert waits(policy, 5) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    jittered = waits(retry_policy(RetrySpec(initial="100ms", max="1s")), 4)
    for got, base in zip(jittered, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert base <= got <= min(base + 0.1, 1.0)
    fixed = retry_policy(RetrySpec(backoff="fixed", initial="250ms"))
    assert waits(fixed, 3) == [0.25, 0.25, 0.25]
    assert waits(retry_policy(RetrySpec(backoff="none")), 2) == [0, 0]


def test_block_keys_override_the_errors_defaults():
    data = {
        "name": "t",
        "errors": {
            "retry": {"attempts": 4, "backoff": "fixed", "initial": "10ms"},
            "circuit_breaker": {"failure_threshold": 3, "reset_after": "2s"},
        },
        "sources": {"a": {"type": "files", "path": "x", "format": "csv"}},
        "sinks": {
            "own": {"type": "files", "input": "a", "path": "o", "retry": {"attempts": 1}},
            "default": {"type": "files", "input": "a", "path": "d"},
        },
    }
    spec = config_module.load(data=data, base_dir=None)
    own, own_breaker = block_settings(spec.sinks["own"], spec.errors)
    default, default_breaker = block_settings(spec.sinks["default"], spec.errors)
    assert own.attempts == 1 and default.attempts == 4 and default.initial_s == 0.01
    assert own_breaker == default_breaker == BreakerSpec(failure_threshold=3, reset_after="2s")
    bare = config_module.load(data={**data, "errors": {}}, base_dir=None)
    assert block_settings(bare.sinks["default"], bare.errors) == (retry_policy(None), None)


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"attempts": 0}, "errors.retry.attempts: must be greater than 0"),
        ({"backoff": "linear"}, "linear"),
        ({"initial": "soon"}, "not a duration"),
    ],
)
def test_bad_retry_keys_are_config_errors(retry, message):
    data = {
        "name": "t",
        "errors": {"retry": retry},
        "sources": {"a": {"type": "files", "path": "x", "format": "csv"}},
        "sinks": {"o": {"type": "files", "input": "a", "path": "o"}},
    }
    with pytest.raises(ConfigError, match=message):
        config_module.load(data=data, base_dir=None)


def flaky(failures: int, error: type[Exception] = TransientError):
    calls = Counter()

    def call():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error(f"down (call {calls['n']})")
        return "ok"

    return call, calls


def test_guarded_retries_only_transient_errors():
    seen = []
    policy = retry_policy(RetrySpec(attempts=4, initial="1ms", max="5ms"))
    call, calls = flaky(2)
    assert guarded(call, name="x", retry=policy, on_retry=lambda *a: seen.append(a[:2])) == "ok"
    assert calls["n"] == 3 and seen == [(2, 4), (3, 4)]
    call, calls = flaky(1, PermanentError)
    with pytest.raises(PermanentError):
        guarded(call, name="x", retry=policy)
    assert calls["n"] == 1
    call, calls = flaky(1, ValueError)  # not typed: not retried either
    with pytest.raises(ValueError):
        guarded(call, name="x", retry=policy)
    assert calls["n"] == 1
    call, calls = flaky(9)
    with pytest.raises(TransientError, match="call 4"):
        guarded(call, name="x", retry=policy)
    assert calls["n"] == 4


def test_breaker_opens_fails_fast_and_recovers_half_open():
    spec = BreakerSpec(failure_threshold=2, reset_after="200ms")
    states: list[str] = []
    call, calls = flaky(3)
    kwargs = {
        "name": "x",
        "endpoint": "db:5432",
        "circuit": spec,
        "on_state": lambda endpoint, state: states.append(state),
    }
    for _ in range(2):
        with pytest.raises(TransientError):
            guarded(call, **kwargs)
    assert states == ["closed", "open"]
    with pytest.raises(CircuitOpenError, match="db:5432 is open"):
        guarded(call, **kwargs)
    assert calls["n"] == 2  # failed fast: not called
    time.sleep(0.25)
    with pytest.raises(TransientError):  # the half-open probe fails: open again
        guarded(call, **kwargs)
    assert calls["n"] == 3 and states[-1] == "open"
    with pytest.raises(CircuitOpenError):
        guarded(call, **kwargs)
    time.sleep(0.25)
    assert guarded(call, **kwargs) == "ok"  # the probe succeeds: closed
    assert states[-1] == "closed" and calls["n"] == 4
    # PermanentError says the endpoint answered: it never opens the breaker
    call, calls = flaky(5, PermanentError)
    for _ in range(5):
        with pytest.raises(PermanentError):
            guarded(call, **kwargs)
    assert states[-1] == "closed" and calls["n"] == 5


# --- fault injection through real runs --------------------------------------------------------

#: calls per (test key, method); the test plugins fail the first N of them
CALLS: Counter[tuple[str, str]] = Counter()
#: the breaker state seen from inside each call
SEEN: list[str] = []


@attrs.frozen
class FlakyOptions:
    tag: str
    fail_stage: int = 0
    fail_publish: int = 0
    fail_extract: int = 0
    permanent: bool = False
    endpoint: str | None = None
    password: Secret | None = None


def _maybe_fail(options: FlakyOptions, method: str, failures: int) -> None:
    CALLS[options.tag, method] += 1
    breaker = _breakers.get(options.endpoint or "")
    SEEN.append(breaker.current_state if breaker is not None else "-")
    if CALLS[options.tag, method] <= failures:
        secret = options.password.reveal() if options.password else "none"
        if options.permanent:
            raise PermanentError(f"{method}: table missing (login {secret})")
        raise TransientError(f"{method}: connection refused (login {secret})")


class FlakySink(Loader):
    name = "flaky"
    Options = FlakyOptions

    def endpoint(self, options):
        return options.endpoint

    def stage(self, ctx, df, options):
        _maybe_fail(options, "stage", options.fail_stage)
        df.count()  # the Spark action that moves the rows
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key)

    def publish(self, ctx, staged, options):
        _maybe_fail(options, "publish", options.fail_publish)

    def discard(self, ctx, staged, options):
        CALLS[options.tag, "discard"] += 1


class FlakySource(Extractor):
    name = "flaky"
    Options = FlakyOptions

    def endpoint(self, options):
        return options.endpoint

    def extract(self, ctx, options):
        _maybe_fail(options, "extract", options.fail_extract)
        return ctx.spark.range(1, 11)


class FlakyPlugin:
    @hookimpl
    def etl_register_loaders(self, register):
        register(FlakySink)

    @hookimpl
    def etl_register_extractors(self, register):
        register(FlakySource)


@pytest.fixture
def host():
    CALLS.clear()
    SEEN.clear()
    return get_plugin_host(autoload=False, extra=[("flaky", FlakyPlugin())])


@pytest.fixture
def etl_log(caplog):
    logger = logging.getLogger("etl")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="etl"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


FAST = {"attempts": 5, "initial": "10ms", "max": "50ms"}


def flaky_pipeline(key: str, *, source: dict | None = None, **sink: object) -> dict:
    return {
        "name": "flaky",
        "sources": {"ids": {"type": "flaky", "tag": f"{key}-src", **(source or {})}},
        "sinks": {"out": {"type": "flaky", "input": "ids", "tag": key, **sink}},
    }


@pytest.mark.spark
def test_transient_stage_failures_succeed_after_retries(etl_run, host, etl_log):
    metrics = etl_run(flaky_pipeline("t1", fail_stage=2, retry=FAST), host=host)
    assert metrics.status == "succeeded" and metrics.published == ["out"]
    assert CALLS["t1", "stage"] == 3 and CALLS["t1", "publish"] == 1
    assert metrics.retries == 2
    assert metrics.stage("out", "load").rows_out == 10
    records = {id(r): r for r in etl_log.records}.values()  # handled via two handlers
    lines = [r.getMessage() for r in records if "retrying" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("etl: retrying sinks.out.stage in ")
    assert lines[0].endswith("s (attempt 2/5): stage: connection refused (login none)")
    assert "(attempt 3/5)" in lines[1]


@pytest.mark.spark
def test_transient_extract_and_publish_failures_retry_from_errors_defaults(etl_run, host):
    spec = flaky_pipeline("t2", source={"fail_extract": 1}, fail_publish=3)
    spec["errors"] = {"retry": FAST}
    metrics = etl_run(spec, host=host)
    assert metrics.status == "succeeded"
    assert CALLS["t2-src", "extract"] == 2 and CALLS["t2", "publish"] == 4
    assert metrics.retries == 1 + 3


@pytest.mark.spark
def test_permanent_failure_fails_at_once(etl_run, host):
    with pytest.raises(PermanentError, match="table missing") as failure:
        etl_run(flaky_pipeline("t3", fail_stage=1, permanent=True, retry=FAST), host=host)
    assert CALLS["t3", "stage"] == 1
    assert failure.value.metrics.retries == 0
    assert CALLS["t3", "discard"] == 1  # the staging was discarded, nothing published


@pytest.mark.spark
def test_without_a_retry_policy_transient_errors_fail_at_once(etl_run, host):
    with pytest.raises(TransientError):
        etl_run(flaky_pipeline("t4", fail_stage=1), host=host)
    assert CALLS["t4", "stage"] == 1
    spec = flaky_pipeline("t4b", fail_stage=1, retry={"attempts": 1})
    spec["errors"] = {"retry": FAST}  # the block's own key wins
    with pytest.raises(TransientError):
        etl_run(spec, host=host)
    assert CALLS["t4b", "stage"] == 1


@pytest.mark.spark
def test_retries_give_up_after_the_last_attempt(etl_run, host):
    with pytest.raises(TransientError) as failure:
        etl_run(flaky_pipeline("t5", fail_stage=99, retry={**FAST, "attempts": 3}), host=host)
    assert CALLS["t5", "stage"] == 3 and failure.value.metrics.retries == 2
    assert failure.value.metrics.published == []


@pytest.mark.spark
def test_retry_log_lines_redact_secrets(etl_run, host, etl_log, monkeypatch):
    planted = "pl4nted-S3CRET-value"
    monkeypatch.setenv("FLAKY_PASSWORD", planted)
    spec = flaky_pipeline("t6", fail_stage=1, retry=FAST)
    spec["sinks"]["out"]["password"] = {"secret": "env:FLAKY_PASSWORD"}
    etl_run(spec, host=host)
    assert "connection refused (login ***)" in etl_log.text
    assert planted not in etl_log.text


@pytest.mark.spark
def test_endpoint_down_opens_the_breaker_and_a_half_open_probe_recovers(etl_run, host):
    breaker = {"failure_threshold": 2, "reset_after": "1m"}  # a Spark run outlasts a short one
    down = flaky_pipeline(
        "t7", fail_stage=99, endpoint="db:5432", retry=FAST, circuit_breaker=breaker
    )
    # attempts 1 and 2 fail and trip it; attempt 3 fails fast, and a fast failure is not retried
    with pytest.raises(CircuitOpenError, match=r"sinks\.out\.stage: .* db:5432 is open"):
        etl_run(down, host=host)
    assert CALLS["t7", "stage"] == 2 and SEEN == ["-", "closed", "closed"]  # "-": extract
    # a later run, while it is open: fails fast, the endpoint is not called
    with pytest.raises(CircuitOpenError) as failure:
        etl_run(down, host=host)
    assert CALLS["t7", "stage"] == 2
    assert failure.value.metrics.breaker_states == {"db:5432": "open"}
    assert failure.value.metrics.retries == 0
    # another sink on the same endpoint shares the breaker
    other = flaky_pipeline("t7-other", endpoint="db:5432", circuit_breaker=breaker)
    with pytest.raises(CircuitOpenError):
        etl_run(other, host=host)
    assert CALLS["t7-other", "stage"] == 0
    # after reset_after (shortened now: settings follow the latest block), one probe goes
    # through (half-open); it succeeds: closed again
    time.sleep(0.25)
    other["sinks"]["out"]["circuit_breaker"] = {"failure_threshold": 2, "reset_after": "200ms"}
    metrics = etl_run(other, host=host)
    assert metrics.status == "succeeded" and CALLS["t7-other", "stage"] == 1
    assert SEEN[-2] == "half-open"  # seen from inside the probe (stage), then publish
    assert metrics.breaker_states == {"db:5432": "closed"}


@pytest.mark.spark
def test_blocks_without_an_endpoint_get_their_own_breaker(etl_run, host):
    spec = flaky_pipeline("t8", fail_stage=99)
    spec["errors"] = {"circuit_breaker": {"failure_threshold": 1, "reset_after": "1m"}}
    with pytest.raises(TransientError):
        etl_run(spec, host=host)
    with pytest.raises(CircuitOpenError, match=r"flaky/sinks\.out"):
        etl_run(spec, host=host)
    assert CALLS["t8", "stage"] == 1
    # the source's breaker is its own and stayed closed
    assert CALLS["t8-src", "extract"] == 2


@pytest.mark.spark
def test_a_failing_publish_opens_the_breaker_its_stage_shares(etl_run, host):
    spec = flaky_pipeline(
        "t9", fail_publish=99, circuit_breaker={"failure_threshold": 1, "reset_after": "1m"}
    )
    with pytest.raises(RunFailed, match=r"sinks\.out: publish failed: .*already published: none"):
        etl_run(spec, host=host)
    with pytest.raises(CircuitOpenError, match=r"sinks\.out\.stage"):
        etl_run(spec, host=host)
    assert (CALLS["t9", "stage"], CALLS["t9", "publish"]) == (1, 1)
