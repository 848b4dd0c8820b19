"""Dead letters from extract (malformed lines) and casts, the error budget, and replay
(DESIGN §7), with fault injection on the real local Spark session."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from etl_core.cli import main
from etl_core.errors import LoadError, RunFailed

pytestmark = pytest.mark.spark

DLQ = {"dead_letter": {"type": "files", "path": "dlq"}}


def write_orders(folder: Path, rows: int, bad_every: int | None = None) -> int:
    """``rows`` data lines; every ``bad_every``-th has a non-numeric amount. Returns bad count."""
    lines, bad = ["id,amount"], 0
    for i in range(1, rows + 1):
        if bad_every and i % bad_every == 0:
            lines.append(f"{i},oops{i}")
            bad += 1
        else:
            lines.append(f"{i},{i * 10}")
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")
    return bad


def pipeline(errors: dict | None = None, **extra: object) -> dict:
    spec: dict = {
        "name": "dl",
        "sources": {
            "orders": {
                "type": "files",
                "format": "csv",
                "path": "orders.csv",
                "read_schema": "id BIGINT, amount BIGINT",
            }
        },
        "sinks": {
            "out": {
                "type": "files",
                "input": "orders",
                "path": "out",
                "format": "parquet",
                "mode": "append",
            }
        },
        "errors": {**DLQ, **(errors or {})},
    }
    spec.update(extra)
    return spec


def records(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(folder.rglob("*.jsonl"))
        if "_etl" not in f.parts
        for line in f.read_text().splitlines()
    ]


def rows_out(folder: Path) -> int:
    return pq.read_table(folder / "out").num_rows if (folder / "out").exists() else 0


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_one_percent_malformed_lines_are_dead_lettered_exactly(etl_run, tmp_path):
    bad = write_orders(tmp_path, 2000, bad_every=100)
    assert bad == 20
    metrics = etl_run(pipeline())
    assert rows_out(tmp_path) == 1980
    extract = metrics.stage("orders", "extract")
    assert (extract.rows_in, extract.rows_out, extract.dead_lettered) == (2000, 1980, 20)
    assert extract.rows_out + extract.dead_lettered == extract.rows_in
    assert metrics.dead_letters == 20
    found = records(tmp_path / "dlq" / "dl" / metrics.run_key / "extract")
    assert len(found) == 20
    first = found[0]
    assert first["stage"] == "extract" and first["component"] == "files"
    assert first["dataset"] == "orders" and first["run_id"] == metrics.run_id
    assert first["row"].split(",")[1].startswith("oops")
    assert first["source_position"].endswith("orders.csv")
    assert first["errors"][0]["rule"] == "malformed"


def test_malformed_json_lines(etl_run, tmp_path):
    lines = [json.dumps({"id": i, "amount": i}) for i in range(1, 99)] + ["{not json", '{"id": 3']
    (tmp_path / "orders.jsonl").write_text("\n".join(lines) + "\n")
    spec = pipeline()
    spec["sources"]["orders"].update(format="jsonl", path="orders.jsonl")
    metrics = etl_run(spec)
    assert rows_out(tmp_path) == 98
    assert metrics.stage("orders", "extract").dead_lettered == 2
    rows = sorted(r["row"] for r in records(tmp_path / "dlq"))
    assert rows == sorted(lines[-2:])


def test_without_a_dead_letter_sink_the_source_reads_as_before(etl_run, tmp_path):
    write_orders(tmp_path, 100, bad_every=10)
    spec = pipeline()
    del spec["errors"]
    etl_run(spec)
    assert rows_out(tmp_path) == 100  # Spark's PERMISSIVE nulls, as before


def cast_pipeline(to: str = "INT") -> dict:
    spec = pipeline(
        transforms={
            "typed": {
                "type": "select",
                "inputs": ["orders"],
                "columns": ["id", "amount_text AS amount"],
                "cast": {"amount": to},
            }
        }
    )
    spec["sources"]["orders"]["read_schema"] = "id BIGINT, amount_text STRING"
    spec["sinks"]["out"]["input"] = "typed"
    return spec


def write_cast_orders(folder: Path) -> None:
    values = ["1", "2", "x3", "4", "5.5", "6", "7", "8", "", "10"]  # "" reads as null
    lines = ["id,amount"] + [f"{i},{v}" for i, v in enumerate(values, 1)]
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")


def test_failed_casts_are_dead_lettered_with_the_input_row(etl_run, tmp_path):
    write_cast_orders(tmp_path)
    metrics = etl_run(cast_pipeline())
    table = pq.read_table(tmp_path / "out").to_pydict()
    assert sorted(table["id"]) == [1, 2, 4, 6, 7, 8, 9, 10]
    transform = metrics.stage("typed", "transform")
    assert (transform.rows_in, transform.rows_out, transform.dead_lettered) == (10, 8, 2)
    found = sorted(records(tmp_path / "dlq"), key=lambda r: r["row"])
    assert [json.loads(r["row"]) for r in found] == [
        {"id": 3, "amount_text": "x3"},
        {"id": 5, "amount_text": "5.5"},
    ]
    assert found[0]["stage"] == "transform" and found[0]["component"] == "select"
    assert found[0]["errors"] == [
        {"rule": "cast", "message": "cannot cast amount value x3 to INT", "severity": "error"}
    ]


def test_budget_exceeded_publishes_nothing(etl_run, tmp_path):
    write_orders(tmp_path, 1000, bad_every=100)
    with pytest.raises(RunFailed, match=r"(?s)error budget.*orders \(extract\): 10 of 1000"):
        etl_run(pipeline({"max_bad_ratio": 0.005}))
    assert rows_out(tmp_path) == 0 and not files_under(tmp_path / "out")
    assert not files_under(tmp_path / "dlq")
    with pytest.raises(RunFailed, match=r"(?s)10 rows dead-lettered .*max_bad_rows = 9"):
        etl_run(pipeline({"max_bad_rows": 9}))
    assert not files_under(tmp_path / "out") and not files_under(tmp_path / "dlq")
    metrics = etl_run(pipeline({"max_bad_rows": 10, "max_bad_ratio": 0.01}))
    assert metrics.dead_letters == 10 and rows_out(tmp_path) == 990


def test_budget_counts_quarantined_rows_too(etl_run, tmp_path):
    write_orders(tmp_path, 100, bad_every=50)  # 2 malformed
    spec = pipeline({"max_bad_rows": 3})
    spec["validate"] = {
        "orders": {
            "rules": [{"range": {"column": "amount", "max": 970}}],
            "on_failure": "quarantine",
        }
    }
    # 2 malformed (ids 50, 100) + 2 quarantined (ids 98, 99)
    with pytest.raises(RunFailed, match=r"(?s)4 rows dead-lettered .*orders \(validate\) 2"):
        etl_run(spec)
    assert not files_under(tmp_path / "out") and not files_under(tmp_path / "dlq")


def test_load_failure_midway_leaves_target_unchanged(etl_run, tmp_path):
    write_orders(tmp_path, 1000, bad_every=100)
    etl_run(pipeline())
    before = {p: p.read_bytes() for p in files_under(tmp_path / "out")}
    dlq_before = files_under(tmp_path / "dlq")
    spec = pipeline(
        transforms={
            "boom": {
                "type": "select",
                "inputs": ["orders"],
                "columns": ["id", "IF(id > 500, raise_error('disk full'), amount) AS amount"],
            }
        }
    )
    spec["sinks"]["out"]["input"] = "boom"
    with pytest.raises(LoadError, match="disk full"):
        etl_run(spec)
    assert {p: p.read_bytes() for p in files_under(tmp_path / "out")} == before
    assert files_under(tmp_path / "dlq") == dlq_before


def write_pipeline(folder: Path, spec: dict) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_replay_of_failed_casts_after_the_fix_publishes_once(etl_run, tmp_path, etl_spark):
    write_cast_orders(tmp_path)
    spec = cast_pipeline()
    spec["sinks"]["out"]["format"] = "jsonl"  # an append sink: a second replay would duplicate
    first = etl_run(spec)
    assert len(records(tmp_path / "out")) == 8
    run_dir = tmp_path / "dlq" / "dl" / first.run_key
    spec["transforms"]["typed"]["cast"] = {"amount": "DOUBLE"}  # the fix
    fixed = write_pipeline(tmp_path, spec)
    cli("dlq", "replay", str(run_dir), "--pipeline", str(fixed))
    ids = sorted(r["id"] for r in records(tmp_path / "out"))
    assert ids == [1, 2, 4, 5, 6, 7, 8, 9, 10]  # "x3" still fails
    assert len(records(tmp_path / "dlq")) == 3  # 2 first, x3 again under the replay's run
    cli("dlq", "replay", str(run_dir), "--pipeline", str(fixed))  # the same path: a no-op
    assert len(records(tmp_path / "out")) == 9
    assert len(records(tmp_path / "dlq")) == 3


def test_replay_of_malformed_lines_with_a_fixed_read_schema(etl_run, tmp_path):
    write_orders(tmp_path, 200, bad_every=100)
    spec = pipeline()
    spec["sinks"]["out"]["format"] = "jsonl"
    first = etl_run(spec)
    spec["sources"]["orders"]["read_schema"] = "id BIGINT, amount STRING"
    (tmp_path / "orders.csv").write_text("id,amount\n")  # the source is not read by a replay
    fixed = write_pipeline(tmp_path, spec)
    run_dir = tmp_path / "dlq" / "dl" / first.run_key
    cli("dlq", "replay", str(run_dir), "--pipeline", str(fixed), "--from-stage", "extract")
    out = records(tmp_path / "out")
    assert len(out) == 200
    assert sorted(r["amount"] for r in out if "oops" in str(r["amount"])) == ["oops100", "oops200"]


def test_replay_of_quarantined_rows_feeds_the_dataset(etl_run, tmp_path):
    write_orders(tmp_path, 10)
    spec = pipeline()
    spec["validate"] = {
        "orders": {
            "rules": [{"range": {"column": "amount", "max": 80}}],
            "on_failure": "quarantine",
        }
    }
    first = etl_run(spec)
    assert rows_out(tmp_path) == 8
    spec["validate"]["orders"]["rules"] = [{"range": {"column": "amount", "max": 1000}}]
    fixed = write_pipeline(tmp_path, spec)
    cli("dlq", "replay", str(tmp_path / "dlq" / "dl" / first.run_key), "--pipeline", str(fixed))
    assert sorted(pq.read_table(tmp_path / "out").to_pydict()["id"]) == list(range(1, 11))


def test_replay_refuses_records_of_another_stage_choice(tmp_path):
    result = CliRunner().invoke(
        main, ["dlq", "replay", str(tmp_path), "--pipeline", "p.yaml", "--from-stage", "load"]
    )
    assert result.exit_code == 2


def test_a_source_with_no_readable_record_fails_and_an_overwrite_keeps_the_old_data(
    etl_run, tmp_path
):
    """A csv source pointed at a zip file: every line malformed. Without an error budget the
    run fails before publishing, so the overwrite keeps what the target held; with
    `max_bad_ratio: 1` the user says such a run may publish."""
    import zipfile

    write_orders(tmp_path, 3)
    spec = pipeline()
    spec["sinks"]["out"]["mode"] = "overwrite"
    etl_run(spec)
    assert pq.read_table(tmp_path / "out").num_rows == 3
    with zipfile.ZipFile(tmp_path / "orders.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("orders.csv", "id,amount\n" + "1,10\n" * 50)
    spec["sources"]["orders"]["path"] = "orders.zip"
    with pytest.raises(RunFailed, match=r"sources\.orders: every record \(\d+\) went to the dead"):
        etl_run(spec)
    assert pq.read_table(tmp_path / "out").num_rows == 3  # the previous content, untouched
    spec["errors"]["max_bad_ratio"] = 1
    metrics = etl_run(spec)
    assert metrics.stage("orders", "extract").rows_out == 0
    assert pq.read_table(tmp_path / "out").num_rows == 0
