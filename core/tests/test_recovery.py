"""Manifests, resume by run id, stale staging (the killed run is the conformance suite's)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from etl_core import hookimpl
from etl_core.builtins.files import FilesLoader
from etl_core.cli import main
from etl_core.errors import RunFailed
from etl_core.plugins import get_plugin_host
from etl_core.run.runner import run_key, run_lock

pytestmark = pytest.mark.spark


def users(folder: Path, count: int) -> None:
    lines = ["user_id,name"] + [f"{i},user{i}" for i in range(1, count + 1)]
    (folder / "users.csv").write_text("\n".join(lines) + "\n")


def spec(mode: str = "overwrite", **sinks: dict) -> dict:
    return {
        "name": "rec",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING",
            }
        },
        "sinks": sinks or {"out": {"type": "files", "input": "users", "path": "out", "mode": mode}},
    }


def manifests(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (folder / "_etl" / "manifests").glob("*")}


def readback(etl_run, path: str = "out") -> int:
    metrics = etl_run(
        {
            "name": "readback",
            "sources": {"back": {"type": "files", "format": "parquet", "path": path}},
            "sinks": {
                "copy": {"type": "files", "input": "back", "path": "copy", "mode": "overwrite"}
            },
        }
    )
    return metrics.stage("back", "extract").rows_out


def test_overwrite_replaces_older_manifests(etl_run, tmp_path):
    users(tmp_path, 5)
    etl_run(spec())
    users(tmp_path, 3)
    metrics = etl_run(spec())
    found = manifests(tmp_path / "out")
    assert list(found) == [metrics.run_key]
    assert len(found[metrics.run_key]["replaces"]) == 1
    assert readback(etl_run) == 3
    assert pq.read_table(tmp_path / "out").num_rows == 3


def test_first_publish_adopts_files_already_there(etl_run, tmp_path):
    (tmp_path / "out").mkdir()
    pq.write_table(
        pa.table({"user_id": pa.array([100], pa.int64()), "name": ["old"]}),
        tmp_path / "out" / "before.parquet",
    )
    users(tmp_path, 2)
    etl_run(spec(mode="append"))
    assert manifests(tmp_path / "out")["adopted"]["files"] == ["before.parquet"]
    assert readback(etl_run) == 3


def test_resume_skips_sinks_that_published(etl_run, tmp_path):
    """Sink `b` fails in publish; the rerun with the same run id publishes only `b`."""
    flag = tmp_path / "fail-publish"
    flag.touch()

    class FlakyLoader(FilesLoader):
        name = "flaky_files"

        def publish(self, ctx, staged, options):
            if flag.exists():
                raise OSError("disk went away")
            super().publish(ctx, staged, options)

    class Plugin:
        @hookimpl
        def etl_register_loaders(self, register):
            register(FlakyLoader)

    host = get_plugin_host(autoload=False, extra=[("flaky", Plugin())])
    users(tmp_path, 4)
    pipeline = spec(
        a={"type": "files", "input": "users", "path": "a", "mode": "error"},
        b={"type": "flaky_files", "input": "users", "path": "b", "mode": "append"},
    )
    with pytest.raises(RunFailed, match=r"already published: a.*--run-id task-7") as failure:
        etl_run(pipeline, host=host, run_id="task-7")
    assert failure.value.published == ("a",)
    assert not (tmp_path / "b" / "_etl" / "manifests").exists()
    flag.unlink()
    metrics = etl_run(pipeline, host=host, run_id="task-7")
    assert metrics.status == "succeeded"
    assert pq.read_table(tmp_path / "a").num_rows == 4
    assert pq.read_table(tmp_path / "b").num_rows == 4
    assert not (tmp_path / "a" / "_etl" / "tmp").exists()


def stage_dir(root: Path, key: str) -> Path:
    folder = root / "out" / "_etl" / "tmp" / key / "0"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"partial")
    return folder.parent


def test_clean_removes_staging_of_dead_and_old_runs_only(tmp_path):
    (tmp_path / "pipeline.yaml").write_text(json.dumps(spec()))
    runs = tmp_path / ".etl" / "runs"
    runs.mkdir(parents=True)
    dead = stage_dir(tmp_path, "dead00000000")
    (runs / "dead00000000.lock").touch()  # left by a killed run, nobody holds it
    old = stage_dir(tmp_path, "old000000000")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = stage_dir(tmp_path, "recent000000")  # no lock here: maybe another machine's run
    live = stage_dir(tmp_path, "live00000000")
    with run_lock(tmp_path, "live00000000"):
        result = CliRunner().invoke(main, ["clean", str(tmp_path / "pipeline.yaml")])
    assert result.exit_code == 0, result.output
    assert "2 stale staging area(s) removed" in result.stdout
    assert not dead.exists() and not old.exists()
    assert recent.exists() and live.exists()
    assert not (runs / "dead00000000.lock").exists()


def test_explain_prints_the_dag_and_plans(tmp_path):
    users(tmp_path, 2)
    pipeline = spec()
    pipeline["transforms"] = {
        "only": {"type": "filter", "inputs": ["users"], "condition": "user_id > 1"}
    }
    pipeline["sinks"]["out"]["input"] = "only"
    (tmp_path / "p.yaml").write_text(json.dumps(pipeline))
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    assert f"└── out (sink: files) → path {(tmp_path / 'out').resolve()}" in result.stdout
    assert "    └── only (transform: filter)" in result.stdout
    assert "== users ==\nreads: path " in result.stdout  # what each source reads
    assert "        └── users (source: files)" in result.stdout
    assert "== only ==" in result.stdout and "Filter" in result.stdout
    assert not (tmp_path / "out").exists()


def test_explain_reports_a_missing_column_with_exit_2(tmp_path):
    users(tmp_path, 2)
    pipeline = spec()
    pipeline["transforms"] = {
        "agg": {"type": "sql", "inputs": ["users"], "query": "SELECT missing_col FROM users"}
    }
    pipeline["sinks"]["out"]["input"] = "agg"
    (tmp_path / "p.yaml").write_text(json.dumps(pipeline))
    result = CliRunner().invoke(main, ["explain", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert "transforms.agg" in result.stderr and "missing_col" in result.stderr
    assert "Traceback" not in result.output


def test_plugins_show_describes_options():
    result = CliRunner().invoke(main, ["plugins", "show", "files"])
    assert result.exit_code == 0, result.output
    assert "files (extractor, from etl-core)" in result.stdout
    assert "files (loader, from etl-core)" in result.stdout
    assert "format     string  (required; one of csv, json, jsonl, parquet)" in result.stdout
    assert "modes: error (default), append, overwrite" in result.stdout
    assert "sinks:\n      my_files:\n        type: files\n        input: <dataset>" in result.stdout
    missing = CliRunner().invoke(main, ["plugins", "show", "fils"])
    assert missing.exit_code == 2 and "unknown component type 'fils'" in missing.stderr


def test_run_lock_file_is_released_after_a_run(etl_run, tmp_path):
    users(tmp_path, 1)
    metrics = etl_run(spec())
    assert not (tmp_path / ".etl" / "runs" / f"{run_key('rec', metrics.run_id)}.lock").exists()
    assert attrs.asdict(metrics)["status"] == "succeeded"


def test_partitioned_output_reads_back_with_its_partition_column(etl_run, tmp_path):
    (tmp_path / "users.csv").write_text("user_id,name,country\n1,a,DE\n2,b,FR\n3,c,DE\n")
    pipeline = spec()
    pipeline["sources"]["users"]["read_schema"] = "user_id BIGINT, name STRING, country STRING"
    pipeline["sinks"]["out"]["partition_by"] = ["country"]
    etl_run(pipeline)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("_")) == [
        "country=DE",
        "country=FR",
    ]
    back = etl_run(
        {
            "name": "back",
            "sources": {"b": {"type": "files", "format": "parquet", "path": "out"}},
            "transforms": {
                "de": {"type": "filter", "inputs": ["b"], "condition": "country = 'DE'"}
            },
            "sinks": {"o": {"type": "files", "input": "de", "path": "de", "format": "json"}},
        }
    )
    assert back.stage("de", "transform").rows_out == 2


def test_incremental_by_modified_time_reads_only_new_files(etl_run, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("user_id,name\n1,a\n2,b\n")
    os.utime(inbox / "a.csv", (time.time() - 60, time.time() - 60))
    pipeline = spec(mode="append")
    pipeline["sources"]["users"].update(path="inbox", incremental={"by": "modified_time"})
    first = etl_run(pipeline)
    assert first.stage("users", "extract").rows_out == 2
    again = etl_run(pipeline)
    assert again.stage("users", "extract").rows_out == 0
    (inbox / "b.csv").write_text("user_id,name\n3,c\n")
    third = etl_run(pipeline)
    assert third.stage("users", "extract").rows_out == 1
    assert pq.read_table(tmp_path / "out").num_rows == 3
    state = json.loads((tmp_path / ".etl" / "state" / "rec.json").read_text())
    assert state["users"] == {"mtime": (inbox / "b.csv").stat().st_mtime, "names": ["b.csv"]}


def test_incremental_needs_the_modified_time_form(etl_run, tmp_path):
    from etl_core.errors import ConfigError

    users(tmp_path, 1)
    pipeline = spec()
    pipeline["sources"]["users"]["incremental"] = {"column": "user_id"}
    with pytest.raises(ConfigError, match=r"sources\.users: .*incremental: \{by: modified_time\}"):
        etl_run(pipeline)


def test_rerunning_a_completed_run_id_changes_nothing(etl_run, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("user_id,name\n1,a\n")
    os.utime(inbox / "a.csv", (time.time() - 60, time.time() - 60))
    pipeline = spec(mode="append")
    pipeline["sources"]["users"].update(path="inbox", incremental={"by": "modified_time"})
    etl_run(pipeline, run_id="daily-1")
    state = tmp_path / ".etl" / "state" / "rec.json"
    before = state.read_text()
    (inbox / "b.csv").write_text("user_id,name\n2,b\n")
    again = etl_run(pipeline, run_id="daily-1")
    assert again.status == "succeeded" and again.stages == []
    assert state.read_text() == before  # the bookmark did not move past b.csv
    assert pq.read_table(tmp_path / "out").num_rows == 1
    etl_run(pipeline, run_id="daily-2")
    assert pq.read_table(tmp_path / "out").num_rows == 2


def test_an_input_pruned_as_empty_does_not_fail_the_run(etl_run, tmp_path):
    """Spark's optimizer drops a join side it knows is empty, and its observation with it."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("user_id,name\n1,a\n")
    os.utime(inbox / "a.csv", (time.time() - 60, time.time() - 60))
    users(tmp_path, 3)
    pipeline = spec(mode="append")
    pipeline["sources"]["new"] = {
        "type": "files",
        "format": "csv",
        "path": "inbox",
        "incremental": {"by": "modified_time"},
    }
    pipeline["transforms"] = {"j": {"type": "join", "inputs": ["new", "users"], "on": ["user_id"]}}
    pipeline["sinks"]["out"]["input"] = "j"
    etl_run(pipeline)
    again = etl_run(pipeline)  # nothing new: the `new` side is an empty relation
    assert again.status == "succeeded"
    assert pq.read_table(tmp_path / "out").num_rows == 1
