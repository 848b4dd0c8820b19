"""The fixtures of the etl pytest plugin and the helper they share (:func:`run_pipeline`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from etl_core import config
from etl_core.api import RunMetrics
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.testing.servers import (
    MotoServer,
    PasswordPostgres,
    moto_process,
    password_postgres_cluster,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["etl_host", "etl_run", "etl_spark", "moto_server", "run_pipeline"]


@pytest.fixture(scope="session")
def etl_spark() -> Iterator[SparkSession]:
    from etl_core.config import EngineSpec
    from etl_core.run.engine import get_spark

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
    start_over: bool = False,
) -> RunMetrics:
    """Load, bind and run a pipeline on ``spark``; raises what ``etl run`` would report.

    ``plugins=True`` loads the installed plugins (entry points), as ``etl run`` does; by
    default only the built-ins are there."""
    from etl_core.run.runner import run

    host = host or get_plugin_host(autoload=plugins)
    if isinstance(pipeline, Mapping):
        bound = config.check(data=pipeline, overrides=overrides, base_dir=base_dir, host=host)
    else:
        bound = config.check(pipeline, overrides=overrides, host=host)
    return run(bound, host, run_id=run_id, spark=spark, start_over=start_over)


@pytest.fixture
def etl_run(etl_spark: SparkSession, tmp_path: Path) -> Callable[..., RunMetrics]:
    """``etl_run(pipeline, **kwargs)`` runs on the shared session, ``base_dir`` ``tmp_path``."""

    def runner(pipeline: Mapping[str, Any] | str | Path, **kwargs: Any) -> RunMetrics:
        kwargs.setdefault("base_dir", tmp_path)
        return run_pipeline(pipeline, spark=etl_spark, **kwargs)

    return runner


@pytest.fixture(scope="session")
def password_postgres() -> Iterator[PasswordPostgres]:
    """A PostgreSQL cluster that checks passwords, for the test session (started on first use)."""
    with password_postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server (default mode: any key is accepted) for the test session."""
    with moto_process(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server
