"""The built-in ``aggregate``, ``window``, ``deduplicate``, ``union`` and ``python`` transforms.

Runs read small CSV files written into ``tmp_path`` with the ``files`` source and write parquet
with the ``files`` sink, on the shared Spark session (``etl_run``); expected rows are exact.
Config mistakes go through ``etl validate`` in-process and never start Spark.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from etl_core.cli import main
from etl_core.errors import ConfigError, PermanentError

HELPERS = Path(__file__).resolve().parent  # etl_test_functions.py, for the python transform


def source(name: str, schema: str) -> dict[str, Any]:
    return {"type": "files", "format": "csv", "path": f"{name}.csv", "read_schema": schema}


def pipeline(
    sources: dict[str, str], transforms: dict[str, dict[str, Any]], *outputs: str
) -> dict[str, Any]:
    """Sources by name → DDL (read from ``<name>.csv``); one parquet sink per output dataset,
    written to ``out_<dataset>``."""
    return {
        "name": "t",
        "sources": {name: source(name, schema) for name, schema in sources.items()},
        "transforms": transforms,
        "sinks": {
            f"out_{name}": {
                "type": "files",
                "input": name,
                "path": f"out_{name}",
                "format": "parquet",
                "mode": "overwrite",
            }
            for name in outputs
        },
    }


def write_csv(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.csv").write_text(textwrap.dedent(text).lstrip())


def output(folder: Path, dataset: str) -> pa.Table:
    return pq.read_table(folder / f"out_{dataset}")


def rows(folder: Path, dataset: str, *columns: str) -> list[tuple[Any, ...]]:
    """The output's rows as tuples of ``columns`` (all, in order, when none are named),
    sorted with nulls first."""
    table = output(folder, dataset)
    names = list(columns) or table.column_names
    found = [tuple(row[c] for c in names) for row in table.to_pylist()]
    return sorted(found, key=lambda row: [(v is not None, v) for v in row])


def at(minute: int) -> dt.datetime:
    """2024-01-01 00:00 UTC plus ``minute`` minutes, as parquet gives it back (naive UTC)."""
    return dt.datetime(2024, 1, 1) + dt.timedelta(minutes=minute)


# --- aggregate ----------------------------------------------------------------------------


@pytest.mark.spark
def test_aggregate_groups_null_keys_together(etl_run, tmp_path):
    write_csv(
        tmp_path,
        "orders",
        """\
        country,amount
        fr,10
        fr,5
        ,7
        ,
        de,1
        """,
    )
    aggregations = {"total": "sum(amount)", "orders": "count(*)", "priced": "count(amount)"}
    spec = pipeline(
        {"orders": "country STRING, amount INT"},
        {
            "by_country": {
                "type": "aggregate",
                "inputs": ["orders"],
                "group_by": ["country"],
                "aggregations": aggregations,
            }
        },
        "by_country",
    )
    etl_run(spec)
    assert output(tmp_path, "by_country").column_names == ["country", "total", "orders", "priced"]
    assert rows(tmp_path, "by_country") == [
        (None, 7, 2, 1),
        ("de", 1, 1, 1),
        ("fr", 15, 2, 2),
    ]


@pytest.mark.spark
def test_aggregate_an_unknown_column_is_a_config_error_before_any_job(etl_run, tmp_path):
    write_csv(tmp_path, "orders", "country,amount\nfr,1\n")
    spec = pipeline(
        {"orders": "country STRING, amount INT"},
        {"agg": {"type": "aggregate", "inputs": ["orders"], "aggregations": {"t": "sum(amont)"}}},
        "agg",
    )
    with pytest.raises(ConfigError) as failure:
        etl_run(spec)
    assert failure.value.path == "transforms.agg"
    assert "amont" in str(failure.value)
    assert not (tmp_path / "out_agg").exists()


@pytest.mark.spark
def test_empty_inputs_give_empty_outputs_but_one_total(etl_run, tmp_path):
    write_csv(tmp_path, "empty", "k,v\n")
    write_csv(tmp_path, "one", "k,v\nx,1\n")
    schema = "k STRING, v INT"
    transforms = {
        "total": {
            "type": "aggregate",
            "inputs": ["empty"],
            "aggregations": {"n": "count(*)", "s": "sum(v)"},
        },
        "grouped": {
            "type": "aggregate",
            "inputs": ["empty"],
            "group_by": ["k"],
            "aggregations": {"n": "count(*)"},
        },
        "ranked": {
            "type": "window",
            "inputs": ["empty"],
            "partition_by": ["k"],
            "order_by": ["v"],
            "functions": {"rn": {"function": "row_number"}},
        },
        "unique": {"type": "deduplicate", "inputs": ["empty"], "keys": ["k"]},
        "latest": {"type": "deduplicate", "inputs": ["empty"], "keys": ["k"], "order_by": ["v"]},
        "stacked": {"type": "union", "inputs": ["empty", "one"]},
    }
    spec = pipeline({"empty": schema, "one": schema}, transforms, *transforms)
    metrics = etl_run(spec)
    assert rows(tmp_path, "total") == [(0, None)]
    for name in ("grouped", "ranked", "unique", "latest"):
        assert output(tmp_path, name).num_rows == 0, name
        assert metrics.stage(name, "transform").rows_out == 0
    assert output(tmp_path, "ranked").column_names == ["k", "v", "rn"]
    assert rows(tmp_path, "stacked") == [("x", 1)]


# --- window: time windows -----------------------------------------------------------------

EVENTS = """\
    user,ts,amount
    a,2024-01-01T00:01:00,1
    a,2024-01-01T00:04:00,2
    b,2024-01-01T00:06:00,16
    a,2024-01-01T00:07:00,4
    a,2024-01-01T00:12:00,8
    """


@pytest.mark.spark
def test_tumbling_sliding_and_offset_time_windows(etl_run, tmp_path):
    write_csv(tmp_path, "events", EVENTS)
    per_user = {"group_by": ["user"], "aggregations": {"total": "sum(amount)", "n": "count(*)"}}
    transforms = {
        "tumbling": {
            "type": "window",
            "inputs": ["events"],
            "time_window": {"column": "ts", "duration": "10m"},
            **per_user,
        },
        "sliding": {
            "type": "window",
            "inputs": ["events"],
            "time_window": {"column": "ts", "duration": "10m", "slide": "5m"},
            **per_user,
        },
        "shifted": {
            "type": "window",
            "inputs": ["events"],
            "time_window": {"column": "ts", "duration": 600, "start_offset": "3m"},
            "aggregations": {"total": "sum(amount)"},
        },
    }
    spec = pipeline({"events": "user STRING, ts TIMESTAMP, amount INT"}, transforms, *transforms)
    etl_run(spec)
    assert output(tmp_path, "tumbling").column_names == [
        "window_start",
        "window_end",
        "user",
        "total",
        "n",
    ]
    assert rows(tmp_path, "tumbling") == [
        (at(0), at(10), "a", 7, 3),
        (at(0), at(10), "b", 16, 1),
        (at(10), at(20), "a", 8, 1),
    ]
    # every row is in two windows of 10 minutes, one starting every 5 minutes
    assert rows(tmp_path, "sliding") == [
        (at(-5), at(5), "a", 3, 2),
        (at(0), at(10), "a", 7, 3),
        (at(0), at(10), "b", 16, 1),
        (at(5), at(15), "a", 12, 2),
        (at(5), at(15), "b", 16, 1),
        (at(10), at(20), "a", 8, 1),
    ]
    assert rows(tmp_path, "shifted") == [(at(-7), at(3), 1), (at(3), at(13), 30)]


# --- window: window functions -------------------------------------------------------------

ORDERS = """\
    user,ts,amount
    a,1,10
    a,2,20
    a,2,5
    a,3,1
    b,1,100
    b,5,7
    """
ORDERS_DDL = "user STRING, ts INT, amount INT"


@pytest.mark.spark
def test_running_total_lag_lead_and_ranks_per_partition(etl_run, tmp_path):
    write_csv(tmp_path, "orders", ORDERS)
    by_user = {"type": "window", "inputs": ["orders"], "partition_by": ["user"]}
    transforms = {
        "running": {
            **by_user,
            "order_by": ["ts"],
            "frame": "running",
            "functions": {
                "running_total": {"function": "sum", "column": "amount"},
                "so_far": {"function": "count"},
            },
        },
        "neighbours": {
            **by_user,
            "order_by": ["ts", "amount DESC"],
            "functions": {
                "rn": {"function": "row_number"},
                "prev": {"function": "lag", "column": "amount"},
                "prev2": {"function": "lag", "column": "amount", "offset": 2},
                "next": {"function": "lead", "column": "amount", "default": 0},
                "user_total": {"function": "sum", "column": "amount"},
                "biggest": {"function": "max", "column": "amount"},
            },
        },
        "ranks": {
            **by_user,
            "order_by": ["ts DESC"],
            "functions": {"r": {"function": "rank"}, "d": {"function": "dense_rank"}},
        },
    }
    etl_run(pipeline({"orders": ORDERS_DDL}, transforms, *transforms))
    # frame: running is RANGE: the two rows at ts 2 (peers) share the running total
    assert rows(tmp_path, "running") == [
        ("a", 1, 10, 10, 1),
        ("a", 2, 5, 35, 3),
        ("a", 2, 20, 35, 3),
        ("a", 3, 1, 36, 4),
        ("b", 1, 100, 100, 1),
        ("b", 5, 7, 107, 2),
    ]
    assert output(tmp_path, "neighbours").column_names == [
        "user",
        "ts",
        "amount",
        "rn",
        "prev",
        "prev2",
        "next",
        "user_total",
        "biggest",
    ]
    assert rows(tmp_path, "neighbours") == [
        ("a", 1, 10, 1, None, None, 20, 36, 20),
        ("a", 2, 5, 3, 20, 10, 1, 36, 20),
        ("a", 2, 20, 2, 10, None, 5, 36, 20),
        ("a", 3, 1, 4, 5, 20, 0, 36, 20),
        ("b", 1, 100, 1, None, None, 7, 107, 100),
        ("b", 5, 7, 2, 100, None, 0, 107, 100),
    ]
    assert rows(tmp_path, "ranks", "user", "ts", "r", "d") == [
        ("a", 1, 4, 3),
        ("a", 2, 2, 2),
        ("a", 2, 2, 2),
        ("a", 3, 1, 1),
        ("b", 1, 2, 2),
        ("b", 5, 1, 1),
    ]


# --- deduplicate --------------------------------------------------------------------------

VERSIONS = """\
    id,updated,name
    1,1,a-old
    1,3,a-new
    1,2,a-mid
    2,5,b
    2,5,b
    ,1,null-old
    ,4,null-new
    3,,c-undated
    3,2,c-dated
    """


@pytest.mark.spark
def test_deduplicate_keep_first_and_last_with_null_keys(etl_run, tmp_path):
    write_csv(tmp_path, "versions", VERSIONS)
    dedup = {"type": "deduplicate", "inputs": ["versions"]}
    transforms = {
        "first": {**dedup, "keys": ["id"], "order_by": ["updated"]},
        "last": {**dedup, "keys": ["id"], "order_by": ["updated"], "keep": "last"},
        "newest": {**dedup, "keys": ["id"], "order_by": ["updated DESC NULLS LAST"]},
        "any_one": {**dedup, "keys": ["id"]},
        "exact": dedup,
    }
    etl_run(pipeline({"versions": "id INT, updated INT, name STRING"}, transforms, *transforms))
    # ascending order puts null first, so the undated row is the first of id 3
    assert rows(tmp_path, "first") == [
        (None, 1, "null-old"),
        (1, 1, "a-old"),
        (2, 5, "b"),
        (3, None, "c-undated"),
    ]
    expected_last = [(None, 4, "null-new"), (1, 3, "a-new"), (2, 5, "b"), (3, 2, "c-dated")]
    assert rows(tmp_path, "last") == expected_last
    assert rows(tmp_path, "newest") == expected_last
    assert [row[0] for row in rows(tmp_path, "any_one")] == [None, 1, 2, 3]
    assert output(tmp_path, "exact").num_rows == 8  # only the repeated `2,5,b` goes


# --- union --------------------------------------------------------------------------------


@pytest.mark.spark
def test_union_widens_types_and_keeps_the_first_inputs_column_order(etl_run, tmp_path):
    write_csv(tmp_path, "small", "id,name\n1,x\n2,y\n")
    write_csv(tmp_path, "large", "name,id\ny,2\nz,3000000000\n")
    write_csv(tmp_path, "empty", "id,name\n")
    sources = {
        "small": "id INT, name STRING",
        "large": "name STRING, id BIGINT",
        "empty": "id INT, name STRING",
    }
    transforms = {
        "stacked": {"type": "union", "inputs": ["small", "large", "empty"]},
        "unique": {"type": "union", "inputs": ["small", "large"], "distinct": True},
    }
    etl_run(pipeline(sources, transforms, *transforms))
    table = output(tmp_path, "stacked")
    assert table.schema.names == ["id", "name"]
    assert table.schema.field("id").type == pa.int64()
    assert rows(tmp_path, "stacked") == [(1, "x"), (2, "y"), (2, "y"), (3000000000, "z")]
    assert rows(tmp_path, "unique") == [(1, "x"), (2, "y"), (3000000000, "z")]


@pytest.mark.spark
def test_union_refuses_different_columns_naming_them(etl_run, tmp_path):
    write_csv(tmp_path, "a", "id,name\n1,x\n")
    write_csv(tmp_path, "b", "id,note\n2,hello\n")
    spec = pipeline(
        {"a": "id INT, name STRING", "b": "id INT, note STRING"},
        {"u": {"type": "union", "inputs": ["a", "b"]}},
        "u",
    )
    with pytest.raises(ConfigError) as failure:
        etl_run(spec)
    assert failure.value.path == "transforms.u"
    message = str(failure.value)
    assert "'a' lacks note; 'b' lacks name" in message
    assert "allow_missing_columns: true" in message
    assert not (tmp_path / "out_u").exists()


@pytest.mark.spark
def test_union_fills_missing_columns_with_nulls_when_allowed(etl_run, tmp_path):
    write_csv(tmp_path, "a", "id,name\n1,x\n")
    write_csv(tmp_path, "b", "ID,note\n2,hello\n")  # names match case-insensitively, as in SQL
    spec = pipeline(
        {"a": "id INT, name STRING", "b": "ID INT, note STRING"},
        {"u": {"type": "union", "inputs": ["a", "b"], "allow_missing_columns": True}},
        "u",
    )
    etl_run(spec)
    assert output(tmp_path, "u").column_names == ["id", "name", "note"]
    assert rows(tmp_path, "u") == [(1, "x", None), (2, None, "hello")]


# --- python -------------------------------------------------------------------------------


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(HELPERS))
    yield


def python_pipeline(tmp_path: Path, function: str, **options: Any) -> dict[str, Any]:
    write_csv(tmp_path, "orders", "order_id,user_id,amount\n1,1,5\n2,1,50\n3,2,70\n")
    write_csv(tmp_path, "users", "user_id,name\n1,ann\n2,bob\n")
    block = {"type": "python", "inputs": ["orders", "users"], "function": function, **options}
    return pipeline(
        {"orders": "order_id INT, user_id INT, amount INT", "users": "user_id INT, name STRING"},
        {"py": block},
        "py",
    )


@pytest.mark.spark
def test_python_transform_gets_named_inputs_and_options(etl_run, tmp_path, helpers):
    spec = python_pipeline(tmp_path, "etl_test_functions:big_orders", options={"min_amount": 10})
    etl_run(spec)
    assert rows(tmp_path, "py", "order_id", "name", "seen_inputs") == [
        (2, "ann", "orders,users"),
        (3, "bob", "orders,users"),
    ]


@pytest.mark.spark
@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("etl_no_such_module:f", "cannot import 'etl_no_such_module:f': no module named"),
        ("etl_test_functions:missing", "'etl_test_functions' has no 'missing'"),
        ("etl_test_functions:NOT_CALLABLE", "'etl_test_functions:NOT_CALLABLE' is not a function"),
    ],
)
def test_python_function_that_cannot_be_imported_is_a_config_error(
    etl_run, tmp_path, helpers, function, message
):
    with pytest.raises(ConfigError) as failure:
        etl_run(python_pipeline(tmp_path, function))
    assert failure.value.path == "transforms.py.function"
    assert message in str(failure.value)
    assert not (tmp_path / "out_py").exists()


@pytest.mark.spark
@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "etl_test_functions:not_a_frame",
            "transforms.py: etl_test_functions:not_a_frame returned list, not a DataFrame",
        ),
        (
            "etl_test_functions:fails",
            "transforms.py: etl_test_functions:fails raised ValueError: the threshold is too low",
        ),
    ],
)
def test_python_function_must_return_a_dataframe_and_its_errors_name_the_transform(
    etl_run, tmp_path, helpers, function, message
):
    with pytest.raises(PermanentError) as failure:
        etl_run(python_pipeline(tmp_path, function))
    assert message in str(failure.value)
    assert failure.value.metrics.status == "failed"
    assert not (tmp_path / "out_py").exists()


# --- config mistakes, found by `etl validate` without Spark -------------------------------

HEAD = """\
version: 1
name: demo
sources:
  orders: {type: files, format: csv, path: orders.csv}
  users: {type: files, format: csv, path: users.csv}
sinks:
  out: {type: files, input: t, path: out/}
transforms:
"""


@pytest.fixture
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Built-ins only, and the "etl" logger put back as `etl` found it (see
    test_config_errors.py)."""
    monkeypatch.setenv("ETL_LOAD_PLUGINS", "")
    monkeypatch.delenv("ETL_DISABLED_PLUGINS", raising=False)
    logger = logging.getLogger("etl")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def validate(tmp_path: Path, transform: str) -> Any:
    path = tmp_path / "pipeline.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(transform), "  "))
    return CliRunner().invoke(main, ["validate", str(path)])


# (id, the `t` transform's block, the path reported, fragments of the message)
MISTAKES = [
    (
        "unknown window function",
        """\
        t: {type: window, inputs: [orders], order_by: [ts],
            functions: {prev: {function: lagg, column: amount}}}
        """,
        "transforms.t.functions.prev.function",
        ["'lagg' is not one of", "did you mean 'lag'?"],
    ),
    (
        "lag without order_by",
        """\
        t: {type: window, inputs: [orders], partition_by: [user_id],
            functions: {prev: {function: lag, column: amount}}}
        """,
        "transforms.t",
        ["`functions.prev`: lag needs `order_by`"],
    ),
    (
        "lead without column",
        "t: {type: window, inputs: [orders], order_by: [ts], functions: {nxt: {function: lead}}}",
        "transforms.t",
        ["`functions.nxt`: lead needs `column`"],
    ),
    (
        "offset on an aggregate",
        """\
        t: {type: window, inputs: [orders], order_by: [ts],
            functions: {s: {function: sum, column: amount, offset: 2}}}
        """,
        "transforms.t",
        ["`functions.s`: `offset` applies only to lag and lead"],
    ),
    (
        "offset zero",
        """\
        t: {type: window, inputs: [orders], order_by: [ts],
            functions: {p: {function: lag, column: amount, offset: 0}}}
        """,
        "transforms.t.functions.p.offset",
        ["must be greater than 0"],
    ),
    (
        "ranking without order_by",
        "t: {type: window, inputs: [orders], functions: {rn: {function: row_number}}}",
        "transforms.t",
        ["`functions.rn`: row_number needs `order_by`"],
    ),
    (
        "bad order_by",
        """\
        t: {type: window, inputs: [orders], order_by: [ts DESCENDING],
            functions: {rn: {function: row_number}}}
        """,
        "transforms.t",
        ["`order_by[0]`: 'ts DESCENDING' is not 'column [ASC|DESC] [NULLS FIRST|NULLS LAST]'"],
    ),
    (
        "running frame without order_by",
        """\
        t: {type: window, inputs: [orders], frame: running,
            functions: {s: {function: sum, column: amount}}}
        """,
        "transforms.t",
        ["`frame: running` needs `order_by`"],
    ),
    (
        "both window modes",
        """\
        t: {type: window, inputs: [orders], time_window: {column: ts, duration: 10m},
            aggregations: {n: "count(*)"}, functions: {rn: {function: row_number}}}
        """,
        "transforms.t",
        [
            "use one of `time_window`, `session_window`",
            "or `functions`",
            "not `time_window` and `functions`",
        ],
    ),
    (
        "neither window mode",
        "t: {type: window, inputs: [orders], partition_by: [user_id]}",
        "transforms.t",
        ["give `time_window`", "or `functions`"],
    ),
    (
        "partition_by with a time window",
        """\
        t: {type: window, inputs: [orders], time_window: {column: ts, duration: 10m},
            partition_by: [user_id], aggregations: {n: "count(*)"}}
        """,
        "transforms.t",
        ["`partition_by` belong to window `functions`"],
    ),
    (
        "slide longer than the window",
        """\
        t: {type: window, inputs: [orders], aggregations: {n: "count(*)"},
            time_window: {column: ts, duration: 5m, slide: 10m}}
        """,
        "transforms.t",
        ["`time_window.slide` ('10m') is longer than `duration` ('5m')"],
    ),
    (
        "not a duration",
        """\
        t: {type: window, inputs: [orders], aggregations: {n: "count(*)"},
            time_window: {column: ts, duration: 10 minutes}}
        """,
        "transforms.t",
        ["`time_window.duration`: '10 minutes' is not a duration"],
    ),
    (
        "unknown time window key",
        """\
        t: {type: window, inputs: [orders], aggregations: {n: "count(*)"},
            time_window: {column: ts, duration: 10m, slid: 5m}}
        """,
        "transforms.t.time_window.slid",
        ["unknown key 'slid'", "did you mean 'slide'?"],
    ),
    (
        "aggregate without aggregations",
        "t: {type: aggregate, inputs: [orders], group_by: [user_id], aggregations: {}}",
        "transforms.t",
        ["`aggregations` is empty"],
    ),
    (
        "aggregate output name",
        """\
        t: {type: aggregate, inputs: [orders], aggregations: {"total amount": "sum(amount)"}}
        """,
        "transforms.t",
        ["`aggregations.total amount`: 'total amount' is not a valid column name"],
    ),
    (
        "aggregate output named like a group column",
        """\
        t: {type: aggregate, inputs: [orders], group_by: [user_id],
            aggregations: {user_id: "max(user_id)"}}
        """,
        "transforms.t",
        ["`aggregations.user_id` has the name of a `group_by` column"],
    ),
    (
        "keep last without order_by",
        "t: {type: deduplicate, inputs: [orders], keys: [order_id], keep: last}",
        "transforms.t",
        ["`keep: last` needs `order_by`"],
    ),
    (
        "keep misspelled",
        "t: {type: deduplicate, inputs: [orders], keys: [order_id], keep: latest}",
        "transforms.t.keep",
        ["'latest' is not one of first, last"],
    ),
    (
        "order_by without keys",
        "t: {type: deduplicate, inputs: [orders], order_by: [ts]}",
        "transforms.t",
        ["`order_by` needs `keys`"],
    ),
    (
        "union of one input",
        "t: {type: union, inputs: [orders]}",
        "transforms.t.inputs",
        ["type 'union' takes at least 2 input(s), got 1"],
    ),
    (
        "union of a dataset with itself",
        "t: {type: union, inputs: [orders, orders]}",
        "transforms.t",
        ["`inputs` lists 'orders' twice"],
    ),
    (
        "union flag not a boolean",
        "t: {type: union, inputs: [orders, users], allow_missing_columns: yes}",
        "transforms.t.allow_missing_columns",
        ["expected true or false, got 'yes'"],
    ),
    (
        "python function without a module",
        "t: {type: python, inputs: [orders], function: enrich}",
        "transforms.t",
        ["`function`: 'enrich' is not a 'module:function' reference"],
    ),
    (
        "python function with a path",
        "t: {type: python, inputs: [orders], function: my/transforms.py:enrich}",
        "transforms.t",
        ["`function`: 'my/transforms.py:enrich' is not a 'module:function' reference"],
    ),
]


@pytest.mark.usefixtures("_hermetic")
@pytest.mark.parametrize(
    ("transform", "path", "fragments"),
    [pytest.param(block, path, fragments, id=case) for case, block, path, fragments in MISTAKES],
)
def test_config_mistakes_are_reported_by_validate(tmp_path, transform, path, fragments):
    result = validate(tmp_path, transform)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.output.startswith("error: "), result.output
    for fragment in [f"{path}: ", *fragments]:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output}"


@pytest.mark.usefixtures("_hermetic")
def test_validate_accepts_every_transform_without_importing_python_functions(tmp_path):
    result = validate(
        tmp_path,
        """\
        daily: {type: window, inputs: [orders], group_by: [user_id],
                time_window: {column: ts, duration: 1d, slide: 1h, start_offset: 30m},
                aggregations: {total: "sum(amount)"}}
        ranked: {type: window, inputs: [orders], partition_by: [user_id],
                 order_by: [ts DESC NULLS LAST, order_id], frame: running,
                 functions: {rn: {function: row_number}, running: {function: sum, column: amount},
                             prev: {function: lag, column: amount, offset: 2, default: 0}}}
        totals: {type: aggregate, inputs: [ranked], aggregations: {n: "count(*)"}}
        latest: {type: deduplicate, inputs: [orders], keys: [order_id], order_by: [ts],
                 keep: last}
        both: {type: union, inputs: [orders, users], allow_missing_columns: true,
               distinct: true}
        t: {type: python, inputs: [latest, both], function: "not_installed.pkg:Cls.method",
            options: {threshold: 10, labels: [a, b]}}
        """,
    )
    assert result.exit_code == 0, result.output
    assert "valid (2 sources, 6 transforms, 1 sink)" in result.output


# --- the examples of docs/transforms.md ---------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "transforms.md"
DOC_FILE = re.compile(r"^`([\w./]+)`:\n\n```\w*\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOC_ROWS = re.compile(r"^Rows of `(\w+)/`.*:\n\n((?:\|.*\n)+)", re.MULTILINE)


def doc_section(transform: str) -> str:
    sections = re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)
    (section,) = [s for s in sections if s.startswith(f"`{transform}` transform")]
    return section


def shown(value: Any) -> str:
    """A value as the doc's tables show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@pytest.mark.spark
@pytest.mark.parametrize("transform", ["aggregate", "window", "deduplicate", "union", "python"])
def test_doc_example_writes_the_rows_it_shows(etl_run, tmp_path, monkeypatch, transform):
    section = doc_section(transform)
    files = DOC_FILE.findall(section)
    assert "pipeline.yaml" in [name for name, _ in files]
    for name, text in files:
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))  # the python example's module
    etl_run(tmp_path / "pipeline.yaml")
    tables = DOC_ROWS.findall(section)
    assert tables
    for folder, table in tables:
        header, _, *body = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.splitlines()
        ]
        written = pq.read_table(tmp_path / folder)
        assert written.column_names == header, folder
        found = [[shown(row[c]) for c in header] for row in written.to_pylist()]
        assert sorted(found) == sorted(body), folder
