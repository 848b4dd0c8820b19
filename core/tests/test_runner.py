"""The runner's commit protocol on the real local Spark session shared by the test run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import attrs
import pyarrow.parquet as pq
import pytest

from etl_core import Extractor, PermanentError, Secret, Transformer, config, hookimpl
from etl_core.errors import ConfigError, LoadError, RunFailed, RunLocked
from etl_core.plugins import get_plugin_host
from etl_core.run.runner import run, run_key, run_lock

pytestmark = pytest.mark.spark


def write_users(folder: Path, rows: int = 10) -> Path:
    path = folder / "users.csv"
    lines = ["user_id,name"] + [f"{i},user{i}" for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline(**extra: object) -> dict:
    base = {
        "name": "t",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING",
            }
        },
        "sinks": {
            "out": {
                "type": "files",
                "input": "users",
                "path": "out",
                "format": "parquet",
                "mode": "overwrite",
            }
        },
    }
    base.update(extra)
    return base


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_counts_come_from_the_staging_action(etl_run, tmp_path):
    write_users(tmp_path, 10)
    metrics = etl_run(pipeline())
    assert metrics.status == "succeeded"
    assert metrics.stage("users", "extract").rows_out == 10
    assert metrics.stage("out", "load").rows_out == 10
    assert metrics.published == ["out"]
    assert pq.read_table(tmp_path / "out").num_rows == 10
    assert not (tmp_path / "out" / "_etl" / "tmp").exists()
    assert len(list((tmp_path / "out" / "_etl" / "manifests").glob("*.json"))) == 1


def test_parquet_sources_are_counted_from_their_footers(etl_run, tmp_path, monkeypatch):
    """A Parquet source reports its rows from the files' footers: exact, and no count node in
    the plan (so the filter is pushed into the scan). The sink still counts what it writes."""
    import pyarrow as pa

    folder = tmp_path / "in"
    folder.mkdir()
    for i, rows in enumerate((3, 5, 7)):
        table = pa.table({"id": list(range(rows)), "part": [i] * rows})
        pq.write_table(table, folder / f"p{i}.parquet")
    plans = []
    from etl_core.builtins.files import FilesLoader

    stage = FilesLoader.stage

    def spying(self, ctx, df, options):
        plans.append(df._jdf.queryExecution().optimizedPlan().toString())
        return stage(self, ctx, df, options)

    monkeypatch.setattr(FilesLoader, "stage", spying)
    metrics = etl_run(
        {
            "name": "footers",
            "sources": {"src": {"type": "files", "format": "parquet", "path": "in"}},
            "transforms": {"small": {"type": "filter", "inputs": ["src"], "condition": "id < 2"}},
            "sinks": {"out": {"type": "files", "input": "small", "path": "out"}},
        }
    )
    assert metrics.stage("src", "extract").rows_out == 15
    assert metrics.stage("out", "load").rows_out == 6
    (plan,) = plans
    assert plan.count("CollectMetrics") == 1  # the sink's input only


def test_second_sink_failing_in_staging_publishes_nothing(etl_run, tmp_path):
    write_users(tmp_path, 10)
    etl_run(pipeline())
    before = snapshot(tmp_path / "out")
    spec = pipeline(
        transforms={
            "broken": {
                "type": "select",
                "inputs": ["users"],
                "columns": ["user_id", "assert_true(user_id < 5) AS check"],
            }
        }
    )
    spec["sinks"]["second"] = {
        "type": "files",
        "input": "broken",
        "path": "second",
        "format": "json",
        "mode": "append",
    }
    write_users(tmp_path, 20)  # the first sink would change if it published
    with pytest.raises(LoadError, match=r"sinks\.second: staging failed") as failure:
        etl_run(spec)
    assert failure.value.metrics.published == []
    assert snapshot(tmp_path / "out") == before
    assert not (tmp_path / "second").exists() or not any(
        p.is_file() for p in (tmp_path / "second").rglob("*")
    )
    assert not (tmp_path / "out" / "_etl" / "tmp").exists()


def test_failing_overwrite_leaves_previous_output_readable(etl_run, tmp_path):
    write_users(tmp_path, 10)
    etl_run(pipeline())
    before = snapshot(tmp_path / "out")
    spec = pipeline(
        transforms={
            "boom": {
                "type": "select",
                "inputs": ["users"],
                "columns": ["user_id", "raise_error('boom') AS name"],
            }
        }
    )
    spec["sinks"]["out"]["input"] = "boom"
    with pytest.raises(LoadError, match="boom"):
        etl_run(spec)
    assert snapshot(tmp_path / "out") == before
    assert pq.read_table(tmp_path / "out").num_rows == 10


def test_mode_error_refuses_a_folder_with_data(etl_run, tmp_path):
    write_users(tmp_path)
    etl_run(pipeline())
    spec = pipeline()
    spec["sinks"]["out"]["mode"] = "error"
    with pytest.raises(LoadError, match="already holds data"):
        etl_run(spec)


def test_append_reads_back_the_union_of_manifests(etl_run, tmp_path):
    write_users(tmp_path, 3)
    spec = pipeline()
    spec["sinks"]["out"]["mode"] = "append"
    etl_run(spec)
    etl_run(spec)
    assert len(list((tmp_path / "out" / "_etl" / "manifests").glob("*.json"))) == 2
    readback = {
        "name": "readback",
        "sources": {"back": {"type": "files", "format": "parquet", "path": "out"}},
        "sinks": {"copy": {"type": "files", "input": "back", "path": "copy", "format": "json"}},
    }
    metrics = etl_run(readback)
    assert metrics.stage("back", "extract").rows_out == 6


def test_same_run_id_publishes_once(etl_run, tmp_path):
    write_users(tmp_path, 4)
    spec = pipeline()
    spec["sinks"]["out"]["mode"] = "append"
    etl_run(spec, run_id="task-1")
    etl_run(spec, run_id="task-1")
    assert pq.read_table(tmp_path / "out").num_rows == 4
    assert not (tmp_path / "out" / "_etl" / "tmp").exists()


def test_analysis_errors_are_config_errors_before_any_job(etl_run, tmp_path):
    write_users(tmp_path)
    spec = pipeline(
        transforms={"bad": {"type": "sql", "inputs": ["users"], "query": "SELECT nope FROM users"}}
    )
    spec["sinks"]["out"]["input"] = "bad"
    with pytest.raises(ConfigError) as failure:
        etl_run(spec)
    assert failure.value.path == "transforms.bad"
    assert "nope" in str(failure.value)
    assert not (tmp_path / "out").exists()


def test_join_suffixes_colliding_columns(etl_run, tmp_path):
    write_users(tmp_path, 3)
    (tmp_path / "orders.csv").write_text("order_id,user_id,name\n1,1,first\n2,2,second\n")
    spec = pipeline(
        transforms={"j": {"type": "join", "inputs": ["users", "orders"], "on": ["user_id"]}}
    )
    spec["sources"]["orders"] = {
        "type": "files",
        "format": "csv",
        "path": "orders.csv",
        "read_schema": "order_id BIGINT, user_id BIGINT, name STRING",
    }
    spec["sinks"]["out"]["input"] = "j"
    etl_run(spec)
    table = pq.read_table(tmp_path / "out")
    assert sorted(table.column_names) == ["name", "name_orders", "order_id", "user_id"]
    assert table.num_rows == 2


def test_shared_dataset_is_computed_once_for_two_sinks(etl_run, tmp_path):
    write_users(tmp_path, 5)
    spec = pipeline()
    spec["sinks"]["again"] = {**spec["sinks"]["out"], "path": "again", "format": "csv"}
    metrics = etl_run(spec)
    extracts = [s for s in metrics.stages if s.stage == "extract"]
    assert [(s.dataset, s.rows_out) for s in extracts] == [("users", 5)]
    assert metrics.stage("again", "load").rows_out == 5
    assert metrics.published == ["out", "again"]


def test_run_lock_refuses_a_second_live_run(tmp_path):
    key = run_key("t", "same")
    with run_lock(tmp_path, key), pytest.raises(RunLocked), run_lock(tmp_path, key):
        pass


# --- plumbing that later issues fill in, driven by test plugins ----------------------------


@attrs.frozen
class RejectOptions:
    below: int


class RejectSmall(Transformer):
    """Routes rows with user_id below a bound to the dead letters."""

    name = "reject_small"
    Options = RejectOptions

    def transform(self, ctx, inputs, options):
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        bad = df.filter(F.col("user_id") < options.below)
        ctx.dead_letter(
            "transform",
            bad.select(
                F.array(
                    F.struct(
                        F.lit("below").alias("rule"),
                        F.lit("user_id too small").alias("message"),
                        F.lit("error").alias("severity"),
                    )
                ).alias("errors"),
                F.to_json(F.struct(*df.columns)).alias("row"),
            ),
        )
        return df.filter(F.col("user_id") >= options.below)


@attrs.frozen
class CountingOptions:
    password: Secret | None = None


class Counting(Extractor):
    """Emits ids 1..10 and proposes 10 as its bookmark; fails if the bookmark is already 10."""

    name = "counting"
    Options = CountingOptions
    capabilities = frozenset({"batch", "incremental"})

    def extract(self, ctx, options):
        if ctx.bookmark == "fail":
            raise PermanentError(f"cannot log in with {options.password.reveal()}")
        ctx.propose_bookmark(10)
        return ctx.spark.range(1, 11).withColumnRenamed("id", "user_id")


class TestPlugin:
    @hookimpl
    def etl_register_transformers(self, register):
        register(RejectSmall)

    @hookimpl
    def etl_register_extractors(self, register):
        register(Counting)


@pytest.fixture
def host():
    return get_plugin_host(autoload=False, extra=[("test-plugin", TestPlugin())])


def test_dead_letters_are_published_first_with_the_run(etl_run, tmp_path, host):
    write_users(tmp_path, 10)
    spec = pipeline(
        transforms={"kept": {"type": "reject_small", "inputs": ["users"], "below": 4}},
        errors={"dead_letter": {"type": "files", "path": "dlq"}},
    )
    spec["sinks"]["out"]["input"] = "kept"
    metrics = etl_run(spec, host=host)
    assert metrics.published == ["dead_letter.transform", "out"]
    assert metrics.dead_letters == 3
    assert pq.read_table(tmp_path / "out").num_rows == 7
    folder = tmp_path / "dlq" / "t" / metrics.run_key / "transform"
    records = [
        json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    assert len(records) == 3
    first = records[0]
    assert first["run_id"] == metrics.run_id and first["stage"] == "transform"
    assert first["component"] == "reject_small" and first["dataset"] == "kept"
    assert first["errors"] == [
        {"rule": "below", "message": "user_id too small", "severity": "error"}
    ]
    assert json.loads(first["row"])["user_id"] < 4


def test_dead_letters_are_discarded_when_a_sink_fails(etl_run, tmp_path, host):
    write_users(tmp_path, 10)
    spec = pipeline(
        transforms={
            "kept": {"type": "reject_small", "inputs": ["users"], "below": 4},
            "boom": {"type": "select", "inputs": ["kept"], "columns": ["raise_error('x') AS y"]},
        },
        errors={"dead_letter": {"type": "files", "path": "dlq"}},
    )
    spec["sinks"]["out"]["input"] = "boom"
    with pytest.raises(LoadError):
        etl_run(spec, host=host)
    assert not any(p.is_file() for p in (tmp_path / "dlq").rglob("*"))


def test_rejected_rows_without_a_dead_letter_sink_fail_the_run(etl_run, tmp_path, host):
    write_users(tmp_path, 10)
    spec = pipeline(transforms={"kept": {"type": "reject_small", "inputs": ["users"], "below": 4}})
    spec["sinks"]["out"]["input"] = "kept"
    with pytest.raises(RunFailed, match="no dead-letter sink"):
        etl_run(spec, host=host)
    assert not (tmp_path / "out").exists()


def counting_pipeline() -> dict:
    return {
        "name": "inc",
        "sources": {"ids": {"type": "counting", "incremental": {"column": "user_id"}}},
        "sinks": {"out": {"type": "files", "input": "ids", "path": "out", "mode": "append"}},
    }


def test_bookmarks_are_saved_only_after_publishing(etl_run, tmp_path, host):
    state = tmp_path / ".etl" / "state" / "inc.json"
    etl_run(counting_pipeline(), host=host)
    assert json.loads(state.read_text()) == {"ids": 10}
    spec = counting_pipeline()
    spec["sinks"]["out"]["mode"] = "error"  # fails at staging: bookmark must not move
    state.write_text(json.dumps({"ids": 5}))
    with pytest.raises(LoadError):
        etl_run(spec, host=host)
    assert json.loads(state.read_text()) == {"ids": 5}


def test_resolved_secrets_are_redacted_from_errors(etl_run, tmp_path, host, monkeypatch):
    planted = "pl4nted-S3CRET-value"
    monkeypatch.setenv("COUNTING_PASSWORD", planted)
    (tmp_path / ".etl" / "state").mkdir(parents=True)
    (tmp_path / ".etl" / "state" / "inc.json").write_text(json.dumps({"ids": "fail"}))
    spec = counting_pipeline()
    spec["sources"]["ids"]["password"] = {"secret": "env:COUNTING_PASSWORD"}
    with pytest.raises(PermanentError) as failure:  # redacted, and still permanent
        etl_run(spec, host=host)
    assert planted not in str(failure.value)
    assert "cannot log in with ***" in str(failure.value)
    assert planted not in (failure.value.metrics.error or "")


def test_lifecycle_hooks_and_log_reporter(etl_run, tmp_path, caplog):
    seen = SimpleNamespace(started=[], stages=[], finished=[])

    class Observer:
        @hookimpl
        def etl_run_started(self, pipeline, run_id):
            seen.started.append((pipeline, run_id))

        @hookimpl
        def etl_stage_finished(self, stage):
            seen.stages.append((stage.dataset, stage.stage, stage.rows_out))

        @hookimpl
        def etl_run_finished(self, metrics):
            seen.finished.append(metrics.status)

    write_users(tmp_path, 2)
    host = get_plugin_host(autoload=False, extra=[("observer", Observer())])
    log_file = tmp_path / "metrics.jsonl"
    metrics = etl_run(pipeline(metrics=[{"type": "log", "path": str(log_file)}]), host=host)
    assert seen.started == [("t", metrics.run_id)]
    assert seen.stages == [("users", "extract", 2), ("out", "load", 2)]
    assert seen.finished == ["succeeded"]
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines[-1]["event"] == "run" and lines[-1]["status"] == "succeeded"
    assert {(x["dataset"], x["rows_out"]) for x in lines if x["event"] == "stage"} == {
        ("users", 2),
        ("out", 2),
    }


def test_stage_finished_fires_after_each_sinks_staging_action(etl_spark, tmp_path):
    """The lifecycle hooks fire when their event happens: a sink's load stage, and the stages
    its staging action computed, are announced before the next sink stages."""
    timeline: list[tuple] = []

    class Observer:
        @hookimpl
        def etl_stage_finished(self, stage):
            timeline.append(("finished", stage.dataset, stage.stage, stage.rows_out))

        @hookimpl
        def etl_run_finished(self, metrics):
            timeline.append(("run finished", metrics.status))

    write_users(tmp_path, 5)
    spec = pipeline()
    spec["sinks"]["again"] = {**spec["sinks"]["out"], "path": "again", "format": "csv"}
    host = get_plugin_host(autoload=False, extra=[("observer", Observer())])
    bound = config.check(data=spec, base_dir=tmp_path, host=host)
    run(bound, host, spark=etl_spark, progress=lambda message: timeline.append((message,)))
    events = [e for e in timeline if e[0] != "staged: out=5, again=5"]
    assert events == [
        ("staging out (files)",),
        ("finished", "users", "extract", 5),
        ("finished", "out", "load", 5),
        ("staging again (files)",),
        ("finished", "again", "load", 5),
        ("publishing out",),
        ("publishing again",),
        ("run finished", "succeeded"),
    ]


def test_unused_dataset_is_not_computed(etl_run, tmp_path, caplog):
    write_users(tmp_path)
    spec = pipeline()
    spec["sources"]["ghost"] = {"type": "files", "format": "csv", "path": "missing.csv"}
    etl_logger = logging.getLogger("etl")  # the CLI may have stopped it propagating
    etl_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="etl"):
            metrics = etl_run(spec)
    finally:
        etl_logger.removeHandler(caplog.handler)
    assert metrics.stage("ghost", "extract") is None
    assert "ghost" in caplog.text


def test_an_input_a_transform_ignores_has_no_count(etl_run, tmp_path):
    write_users(tmp_path, 3)
    spec = pipeline(
        transforms={
            "only": {"type": "sql", "inputs": ["users", "more"], "query": "SELECT * FROM users"}
        }
    )
    spec["sources"]["more"] = {**spec["sources"]["users"]}
    spec["sinks"]["out"]["input"] = "only"
    metrics = etl_run(spec)
    assert metrics.stage("more", "extract").rows_out is None
    assert metrics.stage("users", "extract").rows_out == 3
