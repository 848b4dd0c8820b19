"""Streaming pipelines (`execution: streaming`): one query per pipeline through foreachBatch,
each micro-batch a run of the batch commit protocol."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from etl_core import ConfigError, EtlError, config
from etl_core.plugins import get_plugin_host

pytestmark = pytest.mark.spark


def pipeline(**extra):
    return {
        "name": "events_stream",
        "execution": "streaming",
        "trigger": {"available_now": True},
        "sources": {
            "events": {
                "type": "files",
                "format": "csv",
                "path": "incoming",
                "read_schema": "id BIGINT, kind STRING, amount BIGINT",
            }
        },
        "sinks": {"out": {"type": "files", "input": "events", "path": "out"}},
        **extra,
    }


def write_csv(folder, name, rows):
    folder.mkdir(exist_ok=True)
    lines = ["id,kind,amount", *(f"{i},{k},{a}" for i, k, a in rows)]
    (folder / name).write_text("\n".join(lines) + "\n")


def published(path):
    """The ids a manifest-honouring reader sees."""
    import pyarrow.fs as pafs

    from etl_core.manifests import manifest_files

    names = manifest_files(pafs.LocalFileSystem(), str(path)) or []
    return sorted(row["id"] for name in names for row in pq.read_table(path / name).to_pylist())


def test_available_now_processes_each_file_once_across_runs(etl_run, tmp_path):
    write_csv(tmp_path / "incoming", "a.csv", [(1, "x", 10), (2, "y", 20)])
    write_csv(tmp_path / "incoming", "b.csv", [(3, "x", 30)])
    first = etl_run(pipeline())
    assert first.status == "succeeded"
    assert published(tmp_path / "out") == [1, 2, 3]
    assert first.stage("events", "extract").rows_out == 3
    assert first.streaming and first.streaming[0].batch_id == 0
    write_csv(tmp_path / "incoming", "c.csv", [(4, "z", 40), (5, "z", 50)])
    second = etl_run(pipeline())
    assert published(tmp_path / "out") == [1, 2, 3, 4, 5]
    assert second.stage("events", "extract").rows_out == 2
    assert [b.batch_id for b in second.streaming] == [1]
    assert etl_run(pipeline()).streaming == []  # nothing new: no batch
    assert published(tmp_path / "out") == [1, 2, 3, 4, 5]
    metadata = json.loads((tmp_path / ".etl/checkpoints/events_stream/metadata").read_text())
    assert metadata["id"]
    done = list((tmp_path / ".etl" / "runs").glob("*.done"))
    assert len(done) == 1, done  # one completion marker, the latest batch's


def test_each_batch_reaches_the_metrics_reporters_as_a_run_with_its_batch(etl_run, tmp_path):
    write_csv(tmp_path / "incoming", "a.csv", [(1, "x", 10), (2, "y", 20)])
    etl_run(pipeline(metrics=[{"type": "log", "path": str(tmp_path / "metrics.jsonl")}]))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    runs = [line for line in lines if line["event"] == "run"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    (batch,) = runs[0]["streaming"]
    assert batch["batch_id"] == 0 and batch["batch_duration_s"] > 0
    assert batch["processed_rows_per_second"] > 0


def test_malformed_lines_of_a_stream_go_to_the_dead_letters(etl_run, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.csv").write_text("id,kind,amount\n1,x,10\n2,y,oops\n3,z,30\n")
    metrics = etl_run(pipeline(errors={"dead_letter": {"type": "files", "path": "dlq"}}))
    assert published(tmp_path / "out") == [1, 3]
    extract = metrics.stage("events", "extract")
    assert (extract.rows_out, extract.dead_lettered) == (2, 1)
    letters = [
        json.loads(line)
        for path in (tmp_path / "dlq").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r["row"] for r in letters] == ["2,y,oops"]
    assert letters[0]["source_position"].endswith("a.csv")


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        (
            {"sources": {"a": {"type": "files", "format": "csv", "path": "x"},
                         "b": {"type": "files", "format": "csv", "path": "y"}}},
            "sources",
            "streams exactly one source (streamed here: a, b)",
        ),
        ({"trigger": {"available_now": True, "processing_time": "5s"}}, "trigger",
         "not both"),
        ({"execution": "batch"}, "trigger", "only for `execution: streaming`"),
        ({"transforms": {"t": {"type": "aggregate", "inputs": ["events"], "group_by": ["kind"],
                               "aggregations": {"n": "count(*)"}}}},
         "transforms.t", "needs a watermark"),
    ],
)  # fmt: skip
def test_validate_refuses_what_a_stream_cannot_do(tmp_path, change, path, expected):
    spec = {**pipeline(), **change}
    if "sources" in change:
        spec["sinks"]["out"]["input"] = "a"
    with pytest.raises(ConfigError) as failure:
        config.check(data=spec, base_dir=tmp_path, host=get_plugin_host())
    text = str(failure.value)
    assert path in text and expected in text, text


def test_a_batch_only_mode_and_incremental_are_refused_in_a_stream(tmp_path):
    spec = pipeline()
    spec["sinks"]["out"]["mode"] = "overwrite"
    spec["sources"]["events"]["incremental"] = {"by": "modified_time"}
    with pytest.raises(ConfigError) as failure:
        config.check(data=spec, base_dir=tmp_path, host=get_plugin_host())
    text = str(failure.value)
    assert "sinks.out.mode" in text and "does not exist in `execution: streaming`" in text
    assert "sources.events.incremental" in text and "checkpoint" in text


def test_a_static_lookup_is_joined_to_each_batch(etl_run, tmp_path):
    write_csv(tmp_path / "incoming", "a.csv", [(1, "x", 10), (2, "y", 20)])
    (tmp_path / "kinds.csv").write_text("kind,label\nx,ex\ny,why\n")
    spec = pipeline(transforms={"named": {"type": "join", "inputs": ["events", "kinds"],
                                          "on": ["kind"]}})  # fmt: skip
    spec["sources"]["kinds"] = {"type": "files", "format": "csv", "path": "kinds.csv",
                                "static": True}  # fmt: skip
    spec["sinks"]["out"]["input"] = "named"
    etl_run(spec)
    labels = {
        row["id"]: row["label"]
        for path in (tmp_path / "out").rglob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    }
    assert labels == {1: "ex", 2: "why"}


def test_a_failing_batch_publishes_nothing_and_runs_again_next_time(etl_run, tmp_path):
    write_csv(tmp_path / "incoming", "a.csv", [(1, "x", 10), (2, "y", -5)])
    spec = pipeline(validate={"events": {"rules": [{"range": {"column": "amount", "min": 0}}]}})
    with pytest.raises(EtlError, match="data quality checks failed"):
        etl_run(spec)
    assert published(tmp_path / "out") == []
    del spec["validate"]
    metrics = etl_run(spec)  # the same batch again, from the checkpoint
    assert [b.batch_id for b in metrics.streaming] == [0]
    assert published(tmp_path / "out") == [1, 2]


def test_an_sql_transform_that_groups_the_stream_is_refused_by_explain_and_run(
    etl_run, etl_spark, tmp_path
):
    """What `etl validate` cannot know (the SQL of a transform) Spark's plan shows: grouping
    the streamed rows is refused at its path; grouping a static lookup is fine."""
    from etl_core.run.runner import explain

    write_csv(tmp_path / "incoming", "a.csv", [(1, "x", 10)])
    (tmp_path / "kinds.csv").write_text("kind,label\nx,ex\nx,ex2\n")
    spec = pipeline(transforms={
        "labels": {"type": "sql", "inputs": ["kinds"],
                   "query": "SELECT kind, max(label) AS label FROM kinds GROUP BY kind"},
        "named": {"type": "join", "inputs": ["events", "labels"], "on": ["kind"]},
        "totals": {"type": "sql", "inputs": ["named"],
                   "query": "SELECT kind, sum(amount) AS amount FROM named GROUP BY kind"},
        "top": {"type": "sql", "inputs": ["totals"], "query": "SELECT * FROM totals LIMIT 1"},
    })  # fmt: skip
    spec["sources"]["kinds"] = {"type": "files", "format": "csv", "path": "kinds.csv",
                                "static": True}  # fmt: skip
    spec["sinks"]["out"]["input"] = "top"
    host = get_plugin_host()
    bound = config.check(data=spec, base_dir=tmp_path, host=host)
    with pytest.raises(ConfigError) as failure:
        explain(bound, host, etl_spark)
    (issue,) = failure.value.issues  # `top` reads the refused `totals`: one message
    assert issue.path == "transforms.totals" and "groups rows of each micro-batch" in issue.message
    with pytest.raises(ConfigError, match=r"transforms\.totals"):
        etl_run(spec)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".etl/checkpoints").exists()
    spec["sinks"]["out"]["input"] = "named"
    plans = explain(config.check(data=spec, base_dir=tmp_path, host=host), host, etl_spark)
    assert "== named ==" in plans and "StreamingRelation" in plans, plans
