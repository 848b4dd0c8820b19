"""pytest plugin for etl and for connector authors (loaded through the ``pytest11`` entry point).

Fixtures:

- ``etl_spark``: one local SparkSession for the whole test session, started on first use.
- ``etl_host``: a fresh plugin host per test, built-ins only (entry points not loaded).
- ``etl_run``: load, bind and run a pipeline (a mapping or a file) on the shared session.

Conformance suites for connector authors (see :mod:`etl_core.conformance`):
:class:`ExtractorConformance`, :class:`LoaderConformance`, :class:`TypeCase`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from etl_core import config
from etl_core.api import RunMetrics
from etl_core.conformance import ExtractorConformance, LoaderConformance, TypeCase
from etl_core.plugins import PluginHost, get_plugin_host

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "ExtractorConformance",
    "LoaderConformance",
    "TypeCase",
    "etl_host",
    "etl_run",
    "etl_spark",
    "run_pipeline",
]


@pytest.fixture(scope="session")
def etl_spark() -> Iterator[SparkSession]:
    from etl_core.config import EngineSpec
    from etl_core.engine import get_spark

    spark = get_spark(
        EngineSpec(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"}), "etl-tests"
    )
    yield spark


@pytest.fixture
def etl_host() -> PluginHost:
    return get_plugin_host(autoload=False)


def run_pipeline(
    pipeline: Mapping[str, Any] | str | Path,
    *,
    spark: SparkSession,
    host: PluginHost | None = None,
    base_dir: Path | None = None,
    overrides: Sequence[str] = (),
    run_id: str | None = None,
    plugins: bool = False,
) -> RunMetrics:
    """Load, bind and run a pipeline on ``spark``; raises what ``etl run`` would report.

    ``plugins=True`` loads the installed plugins (entry points), as ``etl run`` does; by
    default only the built-ins are there."""
    from etl_core.runner import run

    host = host or get_plugin_host(autoload=plugins)
    if isinstance(pipeline, Mapping):
        bound = config.check(data=pipeline, overrides=overrides, base_dir=base_dir, host=host)
    else:
        bound = config.check(pipeline, overrides=overrides, host=host)
    return run(bound, host, run_id=run_id, spark=spark)


@pytest.fixture
def etl_run(etl_spark: SparkSession, tmp_path: Path) -> Callable[..., RunMetrics]:
    """``etl_run(pipeline, **kwargs)`` runs on the shared session, ``base_dir`` ``tmp_path``."""

    def runner(pipeline: Mapping[str, Any] | str | Path, **kwargs: Any) -> RunMetrics:
        kwargs.setdefault("base_dir", tmp_path)
        return run_pipeline(pipeline, spark=etl_spark, **kwargs)

    return runner


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Whether an HTTP GET of ``url`` succeeds (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a local test server
            return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def server_process(
    command: Sequence[str], *, ready: Callable[[], bool], log_file: Path, timeout_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the duration of the block: started, awaited until ``ready()``, stopped.

    Its output goes to ``log_file``, shown when it dies or never gets ready."""
    name = Path(command[0]).name
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{log_file.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not get ready in {timeout_s}s:\n{log_file.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
