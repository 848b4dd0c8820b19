"""Event time in streams: watermarks, tumbling/sliding/session windows, deduplication within
the watermark, late rows dropped (counted) or dead-lettered, output modes, restarts.

One deterministic event stream of four files, one micro-batch each (in order of their
modification times), with out-of-order, duplicate and late events. Watermark delay 10 min:

    batch  rows (id@time key)                 watermark it runs under  late rows taken by
    0      1@12:01 a, 2@12:05 a, 3@12:12 b     none                     none
    1      4@12:03 a, 2@12:14 a, 5@12:31 a     12:02                    none
    2      7@12:22 b, 8@12:40 a                12:21                    12:02
    3      9@12:08 a, 10@12:25 a, 11@12:21 b   12:30                    12:21

Spark takes a batch's rows as late by the watermark the batch before ran under (and evicts
state by its own): so 9@12:08 is late for every window, and 9 and 11@12:21 (at the
watermark exactly) for the deduplication. Each expectation below is worked out by hand
from this table; the amount of each event is its id.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl_core import ConfigError, config
from etl_core.plugins import get_plugin_host

pytestmark = pytest.mark.spark

BATCHES = [
    [(1, "12:01", "a"), (2, "12:05", "a"), (3, "12:12", "b")],
    [(4, "12:03", "a"), (2, "12:14", "a"), (5, "12:31", "a")],
    [(7, "12:22", "b"), (8, "12:40", "a")],
    [(9, "12:08", "a"), (10, "12:25", "a"), (11, "12:21", "b")],
]


def write_batch(folder, number):
    """One file per micro-batch, ordered by modification time (how Spark picks them)."""
    folder.mkdir(exist_ok=True)
    path = folder / f"events-{number}.csv"
    lines = ["id,ts,k,amount"]
    lines += [f"{i},2026-01-01 {at}:00,{k},{i}" for i, at, k in BATCHES[number]]
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, (1_000_000 + number, 1_000_000 + number))


def stream(transforms, sinks, **extra):
    return {
        "name": "event_time",
        "execution": "streaming",
        "trigger": {"available_now": True},
        "sources": {
            "events": {
                "type": "files",
                "format": "csv",
                "path": "incoming",
                "options": {"maxFilesPerTrigger": "1"},  # one file, one batch
                "read_schema": "id BIGINT, ts TIMESTAMP, k STRING, amount BIGINT",
                "watermark": {"column": "ts", "delay": "10m", "late": "dead_letter"},
            }
        },
        "transforms": transforms,
        "sinks": {f"{n}_out": {"type": "files", "input": n, "path": n} for n in sinks},
        "errors": {"dead_letter": {"type": "files", "path": "dlq"}},
        **extra,
    }


def rows(folder):
    """Every row written to a files sink (Parquet), times as HH:MM."""

    def plain(value):
        return value.strftime("%H:%M") if isinstance(value, dt.datetime) else value

    return sorted(
        tuple(plain(v) for v in row.values())
        for path in folder.rglob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    )


def dead_letters(folder):
    """The ids of the late rows each dataset dead-lettered."""
    found: dict[str, list[int]] = {}
    for path in folder.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert [e["rule"] for e in record["errors"]] == ["late"]
            row = json.loads(record["row"])
            found.setdefault(record["dataset"], []).append(row.get("id", row.get("view_id")))
    return {name: sorted(ids) for name, ids in found.items()}


WINDOWS = {
    "tumbling": {"type": "window", "inputs": ["events"], "group_by": ["k"],
                 "time_window": {"column": "ts", "duration": "10m"},
                 "aggregations": {"n": "count(*)", "total": "sum(amount)"}},
    "sliding": {"type": "window", "inputs": ["events"], "group_by": ["k"],
                "time_window": {"column": "ts", "duration": "10m", "slide": "5m"},
                "aggregations": {"n": "count(*)", "total": "sum(amount)"}},
    "sessions": {"type": "window", "inputs": ["events"], "group_by": ["k"],
                 "session_window": {"column": "ts", "gap": "5m"},
                 "aggregations": {"n": "count(*)", "total": "sum(amount)"}},
    "once": {"type": "deduplicate", "inputs": ["events"], "keys": ["id"]},
}  # fmt: skip

# append mode: a window is written once, when the watermark (12:30 at the end) passes its end
TUMBLING = [
    ("12:00", "12:10", "a", 3, 7),  # 1, 2, 4 (4 out of order, 9 late)
    ("12:10", "12:20", "a", 1, 2),  # the second 2
    ("12:10", "12:20", "b", 1, 3),
    ("12:20", "12:30", "a", 1, 10),
    ("12:20", "12:30", "b", 2, 18),  # 7 and 11
]  # 5@12:31 and 8@12:40 are in windows still open
SLIDING = [
    ("11:55", "12:05", "a", 2, 5),  # 1, 4
    ("12:00", "12:10", "a", 3, 7),
    ("12:05", "12:15", "a", 2, 4),  # 2@12:05, 2@12:14
    ("12:05", "12:15", "b", 1, 3),
    ("12:10", "12:20", "a", 1, 2),
    ("12:10", "12:20", "b", 1, 3),
    ("12:15", "12:25", "b", 2, 18),
    ("12:20", "12:30", "a", 1, 10),
    ("12:20", "12:30", "b", 2, 18),
]
SESSIONS = [
    ("12:01", "12:10", "a", 3, 7),  # 1@12:01, 4@12:03, 2@12:05: 5 minutes of gap each
    ("12:12", "12:17", "b", 1, 3),
    ("12:14", "12:19", "a", 1, 2),
    ("12:21", "12:27", "b", 2, 18),
    ("12:25", "12:30", "a", 1, 10),
]  # 5@12:31 and 8@12:40 are sessions still open
ONCE = [1, 2, 3, 4, 5, 7, 8, 10]  # the second 2 is a duplicate; 9 and 11 are late


@pytest.mark.parametrize("restart", [False, True], ids=["one-run", "restart-mid-stream"])
def test_every_window_kind_and_deduplication_with_late_rows_dead_lettered(
    etl_run, tmp_path, restart
):
    spec = stream(WINDOWS, list(WINDOWS))
    runs = [[0, 1], [2, 3]] if restart else [[0, 1, 2, 3]]
    batches = []
    for files in runs:  # a restart picks up from the checkpoint: state, watermark, offsets
        for number in files:
            write_batch(tmp_path / "incoming", number)
        batches += etl_run(spec).streaming
    assert rows(tmp_path / "tumbling") == TUMBLING
    assert rows(tmp_path / "sliding") == SLIDING
    assert rows(tmp_path / "sessions") == SESSIONS
    assert sorted(row[0] for row in rows(tmp_path / "once")) == ONCE
    assert dead_letters(tmp_path / "dlq") == {
        "tumbling": [9], "sliding": [9], "sessions": [9], "once": [9, 11]
    }  # fmt: skip
    # Spark's own count, in the batch of the late rows: rows for a deduplication, late groups
    # for an aggregation (9 falls in one tumbling window, two sliding ones and one session):
    # 1 + 2 + 1 + 2. (With the restart, the first run ends with a batch of no data that
    # moves the watermark: the batch ids differ, the results do not.)
    assert [b.dropped_by_watermark for b in batches if b.dropped_by_watermark] == [6], batches
    assert batches[-1].watermark == "2026-01-01T12:30:00.000Z"


def test_update_mode_writes_every_window_each_batch_changed_and_drops_late_rows(etl_run, tmp_path):
    """`output_mode: update` writes each window a batch changed, with its value so far; late
    rows (`late: drop`, the default) are dropped and counted per batch."""
    spec = stream({"tumbling": WINDOWS["tumbling"]}, ["tumbling"], output_mode="update")
    del spec["sources"]["events"]["watermark"]["late"]
    for number in range(4):
        write_batch(tmp_path / "incoming", number)
    metrics = etl_run(spec)
    assert rows(tmp_path / "tumbling") == sorted([
        ("12:00", "12:10", "a", 2, 3), ("12:10", "12:20", "b", 1, 3),  # batch 0
        ("12:00", "12:10", "a", 3, 7), ("12:10", "12:20", "a", 1, 2),  # batch 1
        ("12:30", "12:40", "a", 1, 5),
        ("12:20", "12:30", "b", 1, 7), ("12:40", "12:50", "a", 1, 8),  # batch 2
        ("12:20", "12:30", "a", 1, 10), ("12:20", "12:30", "b", 2, 18),  # batch 3: 9 late
    ])  # fmt: skip
    late = {b.batch_id: b.dropped_by_watermark for b in metrics.streaming}
    assert late[3] == 1 and sum(late.values()) == 1, late
    assert dead_letters(tmp_path / "dlq") == {}
    assert metrics.stage("events", "extract").rows_out == 11

    # the state store was chosen when the checkpoint started; another one is refused
    store = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
    spec["engine"] = {"conf": {"spark.sql.streaming.stateStore.providerClass": store}}
    with pytest.raises(ConfigError) as failure:
        etl_run(spec)
    assert "engine.conf.spark.sql.streaming.stateStore.providerClass" in str(failure.value)
    assert "RocksDBStateStoreProvider" in str(failure.value)


@pytest.mark.parametrize(
    ("transforms", "path", "expected"),
    [
        ({"t": {**WINDOWS["tumbling"]}}, "transforms.t", "needs a watermark"),
        ({"t": {**WINDOWS["once"]}}, "transforms.t", "needs a watermark"),
        ({"t": {**WINDOWS["tumbling"], "time_window": {"column": "other", "duration": "1m"}}},
         "transforms.t", "must use the watermark's column 'ts'"),
        ({"t": {"type": "aggregate", "inputs": ["events"], "group_by": ["k"],
                "aggregations": {"n": "count(*)"}}},
         "transforms.t", "needs a watermark"),
        ({"t": {"type": "window", "inputs": ["events"], "functions": {"r": {
            "function": "row_number"}}, "order_by": ["ts"]}},
         "transforms.t", "cannot run over a stream"),
        ({"t": {**WINDOWS["once"], "order_by": ["ts"]}}, "transforms.t", "remove `order_by`"),
        ({"o": WINDOWS["once"], "t": {**WINDOWS["tumbling"], "inputs": ["o"]}},
         "transforms.t", "reads the output of o, which keeps state too"),
    ],
)  # fmt: skip
def test_validate_refuses_a_stateful_transform_that_cannot_work(
    tmp_path, transforms, path, expected
):
    spec = stream(transforms, ["t"])
    if "needs a watermark" in expected:
        del spec["sources"]["events"]["watermark"]
    with pytest.raises(ConfigError) as failure:
        config.check(data=spec, base_dir=tmp_path, host=get_plugin_host())
    text = str(failure.value)
    assert path in text and expected in text, text


def test_validate_refuses_misplaced_watermarks_and_unroutable_late_rows(tmp_path):
    spec = stream({"t": WINDOWS["tumbling"]}, ["t"])
    del spec["errors"]
    spec["sources"]["kinds"] = {
        "type": "files",
        "format": "csv",
        "path": "k.csv",
        "static": True,
        "watermark": {"column": "ts", "delay": "1m"},
    }
    spec["validate"] = {"events": {"rules": [{"not_null": {"column": "k"}}],
                                   "on_failure": "quarantine"}}  # fmt: skip
    with pytest.raises(ConfigError) as failure:
        config.check(data=spec, base_dir=tmp_path, host=get_plugin_host())
    text = str(failure.value)
    assert "sources.events.watermark.late" in text and "no dead-letter sink" in text
    assert "sources.kinds.watermark" in text and "does not read the stream" in text
    assert "validate.events.on_failure" in text and "cannot be quarantined" in text
    batch = {**spec, "execution": "batch"}
    for key in ("trigger", "errors"):
        batch.pop(key, None)
    with pytest.raises(ConfigError, match=r"sources\.events\.watermark: only for `execution"):
        config.check(data=batch, base_dir=tmp_path, host=get_plugin_host())


def test_a_watermark_on_a_column_that_is_not_a_timestamp_is_refused_before_the_stream(
    etl_run, etl_spark, tmp_path
):
    """Declared in `read_schema`: `etl validate` refuses it. Made by a transform: Spark's
    schema shows it, and `etl explain` and `etl run` refuse it before the query starts."""
    from etl_core.run.runner import explain

    spec = stream({"t": WINDOWS["tumbling"]}, ["t"])
    spec["sources"]["events"]["read_schema"] = "id BIGINT, ts STRING, k STRING, amount BIGINT"
    with pytest.raises(ConfigError, match=r"watermark\.column: 'ts' is declared STRING"):
        config.check(data=spec, base_dir=tmp_path, host=get_plugin_host())

    spec = stream({"as_text": {"type": "select", "inputs": ["events"],
                               "columns": ["k", "amount", "cast(ts AS STRING) AS at"],
                               "watermark": {"column": "at", "delay": "1m"}},
                   "t": {**WINDOWS["tumbling"], "inputs": ["as_text"],
                         "time_window": {"column": "at", "duration": "10m"}}}, ["t"])  # fmt: skip
    del spec["sources"]["events"]["watermark"]
    write_batch(tmp_path / "incoming", 0)
    host = get_plugin_host()
    bound = config.check(data=spec, base_dir=tmp_path, host=host)
    for attempt in (lambda: explain(bound, host, etl_spark), lambda: etl_run(spec)):
        with pytest.raises(ConfigError) as failure:
            attempt()
        (issue,) = failure.value.issues
        assert issue.path == "transforms.as_text.watermark.column", issue
        assert "'at' is a string, not a timestamp" in issue.message
    assert not (tmp_path / ".etl/checkpoints").exists()


# --- the worked example of docs/streaming.md ------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "streaming.md"
DOC_FILE = re.compile(r"^`([\w./]+)`:\n\n```\w*\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOC_ROWS = re.compile(r"^Rows of `(\w+)/`:\n\n((?:\|.*\n)+)", re.MULTILINE)


def test_the_worked_example_of_the_docs_writes_the_rows_it_shows(etl_run, tmp_path):
    section = DOC.read_text().split("### A worked example", 1)[1].split("\n## ", 1)[0]
    for number, (name, text) in enumerate(DOC_FILE.findall(section)):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        os.utime(path, (1_000_000 + number, 1_000_000 + number))  # the order they arrive in
    etl_run(tmp_path / "pipeline.yaml")

    def shown(value):
        return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else str(value)

    tables = DOC_ROWS.findall(section)
    assert [folder for folder, _ in tables] == ["counts", "views_once"]
    for folder, table in tables:
        header, _, *body = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.splitlines()
        ]
        written = pq.read_table(tmp_path / folder)
        assert written.column_names == header
        found = [[shown(row[c]) for c in header] for row in written.to_pylist()]
        assert sorted(found) == sorted(body), folder
    assert dead_letters(tmp_path / "dlq") == {"per_page": [8], "unique_views": [8]}
