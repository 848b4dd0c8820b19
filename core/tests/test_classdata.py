"""Which JVM options a session gets from ``etl engine prepare``'s class-data archive: pure
functions over a temporary cache folder (the archive's effect on a real JVM is checked in
tests/test_shutdown.py, where a run's JVM is seen mapping it)."""

from __future__ import annotations

import json

import pytest

from etl_core.config.model import EngineSpec
from etl_core.run import classdata
from etl_core.run.engine import class_data_missing, spark_conf


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "etl" / "jvm"


def fake_archive(conf: dict[str, str], size: int = 10, recorded: int | None = None):
    path = classdata.archive_path(conf)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    path.with_suffix(".json").write_text(
        json.dumps({"size": size if recorded is None else recorded})
    )
    return path


def driver_options(engine: EngineSpec) -> str:
    return spark_conf(engine, "t")["spark.driver.extraJavaOptions"]


def test_a_session_maps_the_archive_only_once_one_is_prepared(cache):
    engine = EngineSpec()
    assert "SharedArchiveFile" not in driver_options(engine)
    assert class_data_missing(engine)
    path = fake_archive(spark_conf(engine, "t"))
    assert path.parent == cache
    options = driver_options(engine)
    assert f"-XX:SharedArchiveFile={path}" in options
    assert "-Dlog4j2.configurationFile=" in options  # etl's own options stay
    assert not class_data_missing(engine)


def test_an_archive_cut_short_is_never_mapped(cache):
    """A truncated archive crashes the JVM (SIGBUS): its size must be the recorded one."""
    fake_archive(spark_conf(EngineSpec(), "t"), size=10, recorded=20)
    assert "SharedArchiveFile" not in driver_options(EngineSpec())


def test_jars_key_their_own_archive_and_settings_can_turn_it_off(cache):
    fake_archive(spark_conf(EngineSpec(), "t"))
    with_jar = EngineSpec(conf={"spark.jars": "/opt/jdbc.jar"})
    assert "SharedArchiveFile" not in driver_options(with_jar)
    assert classdata.archive_path(spark_conf(with_jar, "t")) != classdata.archive_path(
        spark_conf(EngineSpec(), "t")
    )
    assert "SharedArchiveFile" not in driver_options(EngineSpec(class_data_sharing=False))
    assert not class_data_missing(EngineSpec(class_data_sharing=False))
    own = EngineSpec(conf={"spark.driver.extraJavaOptions": "-Xshare:off"})
    assert driver_options(own) == "-Xshare:off"  # the user's own choice is left as it is
    mine = EngineSpec(conf={"spark.driver.extraJavaOptions": "-Xmx3g"})
    assert driver_options(mine).startswith("-Xmx3g -XX:SharedArchiveFile=")
