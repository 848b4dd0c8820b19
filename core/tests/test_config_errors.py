"""`etl validate` on broken pipeline files: exit 2, the config path, a fix, never a traceback.

Everything here runs in-process through click's ``CliRunner`` (or calls ``etl_core.config``
directly) and never starts Spark; one subprocess test checks that ``etl validate`` does not even
import pyspark.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner, Result

from etl_core import config
from etl_core.cli import main
from etl_core.errors import ConfigError

HEAD = "version: 1\nname: demo\n"
SOURCES = """\
sources:
  orders: {type: files, format: csv, path: data/orders.csv}
  users: {type: files, format: csv, path: data/users.csv}
"""
TRANSFORMS = """\
transforms:
  enriched: {type: join, inputs: [orders, users], on: [user_id], how: left}
"""
SINKS = """\
sinks:
  out: {type: files, input: enriched, path: out/}
"""
VALID = HEAD + SOURCES + TRANSFORMS + SINKS


def doc(
    *,
    head: str = HEAD,
    sources: str = SOURCES,
    transforms: str = TRANSFORMS,
    sinks: str = SINKS,
    extra: str = "",
) -> str:
    """A pipeline file: the valid one with some sections replaced (each a YAML fragment)."""
    return head + sources + transforms + sinks + textwrap.dedent(extra)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Built-ins only: an installed connector (etl-plugin-postgres, ...) must not change the
    # messages these tests expect.
    monkeypatch.setenv("ETL_LOAD_PLUGINS", "")
    monkeypatch.delenv("ETL_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("ETL_TEST_UNSET_VAR", raising=False)
    # `etl` configures the "etl" logger (handler, level, propagate) on every invocation; put it
    # back as it was so tests elsewhere that capture its records (caplog) are not affected.
    logger = logging.getLogger("etl")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(path: Path | str, *args: str) -> Result:
    return CliRunner().invoke(main, ["validate", str(path), *args])


def assert_config_error(result: Result, *expected: str) -> None:
    """Exit 2 through the CLI's own error path; every expected fragment is in the output."""
    output = result.output
    assert result.exit_code == 2, output
    # An uncaught exception would also be stored here (CliRunner hides its traceback).
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert output.startswith("error: "), output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} not in:\n{output}"


# --- one mistake per case -----------------------------------------------------------------

# (id, pipeline text, extra CLI args, expected path, fragments of the message and fix)
CASES = [
    (
        "top-level key misspelled",
        doc(extra="sorces: {}\n"),
        (),
        "sorces",
        ["unknown key 'sorces'", "did you mean 'sources'?"],
    ),
    (
        "source key misspelled",
        doc(
            sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, delimeter: ";"}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.delimeter",
        ["unknown key 'delimeter'", "did you mean 'delimiter'?"],
    ),
    (
        "core key of a sink misspelled",
        doc(sinks="sinks:\n  out: {type: files, input: enriched, path: out/, on_rejct: fail}\n"),
        (),
        "sinks.out.on_rejct",
        ["unknown key 'on_rejct'", "did you mean 'on_reject'?"],
    ),
    (
        "unknown component type",
        doc(
            sources="""\
sources:
  orders: {type: file, format: csv, path: data/orders.csv}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.type",
        ["unknown extractor type 'file'", "known: files", "did you mean 'files'?"],
    ),
    (
        "unknown transform type",
        doc(
            transforms="""\
transforms:
  enriched: {type: joinn, inputs: [orders, users], on: [user_id]}
"""
        ),
        (),
        "transforms.enriched.type",
        ["unknown transformer type 'joinn'", "did you mean 'join'?"],
    ),
    (
        "first-party connector not installed",
        doc(
            sources="""\
sources:
  orders: {type: postgres, table: public.orders}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.type",
        ["unknown extractor type 'postgres'", "pip install etl-plugin-postgres"],
    ),
    (
        "first-party credential provider not installed",
        doc(extra="credentials:\n  warehouse: {provider: vault, path: etl/warehouse}\n"),
        (),
        "credentials.warehouse.provider",
        ["unknown credential provider type 'vault'", "pip install etl-plugin-vault"],
    ),
    (
        "string where an integer is expected",
        doc(extra="errors:\n  retry: {attempts: five}\n"),
        (),
        "errors.retry.attempts",
        ["expected an integer, got 'five'"],
    ),
    (
        "string where a boolean is expected",
        doc(
            sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, header: yes}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.header",
        ["expected true or false, got 'yes'"],
    ),
    (
        "a string where a list of inputs is expected",
        doc(transforms="transforms:\n  enriched: {type: select, inputs: orders, columns: [id]}\n"),
        (),
        "transforms.enriched.inputs",
        ["expected a list, got 'orders'"],
    ),
    (
        "retry attempts not positive",
        doc(extra="errors:\n  retry: {attempts: 0}\n"),
        (),
        "errors.retry.attempts",
        ["must be greater than 0"],
    ),
    (
        "invalid format",
        doc(
            sources="""\
sources:
  orders: {type: files, format: xml, path: data/orders.csv}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.format",
        ["'xml' is not one of csv, json, jsonl, parquet"],
    ),
    (
        "sink mode misspelled",
        doc(sinks="sinks:\n  out: {type: files, input: enriched, path: out/, mode: apend}\n"),
        (),
        "sinks.out.mode",
        ["'apend' is not one of error, append, overwrite", "did you mean 'append'?"],
    ),
    (
        "sink mode the loader does not support",
        doc(sinks="sinks:\n  out: {type: files, input: enriched, path: out/, mode: upsert}\n"),
        (),
        "sinks.out.mode",
        ["'upsert' is not one of error, append, overwrite (the modes type 'files' supports)"],
    ),
    (
        "sink key with a mode that takes none",
        doc(
            sinks="sinks:\n  out: {type: files, input: enriched, path: out/, mode: append, "
            "key: [id]}\n"
        ),
        (),
        "sinks.out.key",
        ["`key` is not used by `mode: append`", "remove it"],
    ),
    (
        "join how misspelled",
        doc(
            transforms="""\
transforms:
  enriched: {type: join, inputs: [orders, users], on: [user_id], how: leftt}
"""
        ),
        (),
        "transforms.enriched.how",
        ["'leftt' is not one of", "did you mean 'left'?"],
    ),
    (
        "on_reject misspelled",
        doc(
            sinks="sinks:\n  out: {type: files, input: enriched, path: out/,"
            " on_reject: dead_leter}\n"
        ),
        (),
        "sinks.out.on_reject",
        ["is not one of fail, dead_letter", "did you mean 'dead_letter'?"],
    ),
    (
        "validate mode misspelled",
        doc(extra="validate:\n  orders: {mode: strickt}\n"),
        (),
        "validate.orders.mode",
        ["did you mean 'strict'?"],
    ),
    (
        "pipeline execution misspelled",
        doc(extra="execution: streeming\n"),
        (),
        "execution",
        ["'streeming' is not one of batch, streaming", "did you mean 'streaming'?"],
    ),
    (
        "unknown transform input",
        doc(
            transforms="""\
transforms:
  enriched: {type: join, inputs: [ordrs, users], on: [user_id]}
"""
        ),
        (),
        "transforms.enriched.inputs[0]",
        ["unknown input 'ordrs'", "did you mean 'orders'?"],
    ),
    (
        "unknown sink input",
        doc(sinks="sinks:\n  out: {type: files, input: enriched_, path: out/}\n"),
        (),
        "sinks.out.input",
        ["unknown input 'enriched_'", "did you mean 'enriched'?"],
    ),
    (
        "sink input missing",
        doc(sinks="sinks:\n  out: {type: files, path: out/}\n"),
        (),
        "sinks.out.input",
        ["required key is missing", "`input: ...`"],
    ),
    (
        "no sinks",
        doc(sinks=""),
        (),
        "sinks",
        ["the pipeline has no sinks", "add a `sinks:` block"],
    ),
    (
        "cycle between two transforms",
        doc(
            transforms="""\
transforms:
  enriched: {type: join, inputs: [orders, users], on: [user_id]}
  a: {type: filter, inputs: [b], condition: "x > 1"}
  b: {type: filter, inputs: [a], condition: "x > 1"}
""",
            sinks="sinks:\n  out: {type: files, input: b, path: out/}\n",
        ),
        (),
        "transforms.a.inputs",
        ["cycle: a -> b -> a", "break the loop"],
    ),
    (
        "dataset name used by a source and a transform",
        doc(
            transforms="""\
transforms:
  orders: {type: select, inputs: [users], columns: [user_id]}
  enriched: {type: join, inputs: [orders, users], on: [user_id]}
"""
        ),
        (),
        "transforms.orders",
        ["name 'orders' is already used by sources.orders", "its own name"],
    ),
    (
        "invalid dataset name",
        doc(sources=SOURCES + "  my-source: {type: files, format: csv, path: data/x.csv}\n"),
        (),
        "sources.my-source",
        ["'my-source' is not a valid name", "letters, digits and underscores"],
    ),
    (
        "name missing",
        doc(head="version: 1\n"),
        (),
        "name",
        ["required key is missing", "add e.g. `name: orders_daily`"],
    ),
    (
        "invalid pipeline name",
        doc(head="version: 1\nname: orders-daily\n"),
        (),
        "name",
        ["'orders-daily' is not a valid pipeline name"],
    ),
    (
        "unsupported version",
        doc(head="version: 2\nname: demo\n"),
        (),
        "version",
        ["unsupported version 2", "write `version: 1`"],
    ),
    (
        "unknown credentials entry",
        doc(
            sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, credentials: warehous}
  users: {type: files, format: csv, path: data/users.csv}
""",
            extra="credentials:\n  warehouse: {provider: env, fields: {user: PG_USER}}\n",
        ),
        (),
        "sources.orders.credentials",
        ["'warehous' is not defined", "did you mean 'warehouse'?"],
    ),
    (
        "incremental in a form the source cannot read",
        doc(
            sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, incremental: {column: id}}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders",
        ["files sources read incrementally by modification time only"],
    ),
    (
        "unset environment variable",
        doc(
            sources="""\
sources:
  orders: {type: files, format: csv, path: "${ETL_TEST_UNSET_VAR}/orders.csv"}
  users: {type: files, format: csv, path: data/users.csv}
"""
        ),
        (),
        "sources.orders.path",
        ["environment variable ETL_TEST_UNSET_VAR is not set", "${ETL_TEST_UNSET_VAR:-default}"],
    ),
    (
        "--set without =",
        VALID,
        ("--set", "sources.orders.path"),
        "--set sources.orders.path",
        ["expected PATH=VALUE", "e.g. --set sources.orders.path=data/orders.csv"],
    ),
    (
        "--set through a scalar",
        VALID,
        ("--set", "sources.orders.path.deep=1"),
        "sources.orders.path",
        ["not a mapping"],
    ),
    (
        "join without on",
        doc(transforms="transforms:\n  enriched: {type: join, inputs: [orders, users]}\n"),
        (),
        "transforms.enriched",
        ["`on` is required", "on: [user_id]"],
    ),
    (
        "select with nothing to do",
        doc(
            transforms=TRANSFORMS + "  picked: {type: select, inputs: [enriched]}\n",
            sinks="sinks:\n  out: {type: files, input: picked, path: out/}\n",
        ),
        (),
        "transforms.picked",
        ["give at least one of `columns`, `rename` or `cast`"],
    ),
    (
        "sql with an empty query",
        doc(
            transforms=TRANSFORMS + '  daily: {type: sql, inputs: [enriched], query: "  "}\n',
            sinks="sinks:\n  out: {type: files, input: daily, path: out/}\n",
        ),
        (),
        "transforms.daily.query",
        ["is empty", "give `query` a value"],
    ),
    (
        "filter with two inputs",
        doc(
            transforms="""\
transforms:
  enriched: {type: filter, inputs: [orders, users], condition: "id > 0"}
"""
        ),
        (),
        "transforms.enriched.inputs",
        ["type 'filter' takes 1 input(s), got 2"],
    ),
    (
        "join with one input",
        doc(transforms="transforms:\n  enriched: {type: join, inputs: [orders], on: [user_id]}\n"),
        (),
        "transforms.enriched.inputs",
        ["type 'join' takes at least 2 input(s), got 1"],
    ),
    (
        "bad duration",
        doc(extra="errors:\n  retry: {initial: soon}\n"),
        (),
        "errors.retry.initial",
        ["'soon' is not a duration", "500ms, 30s, 2m or 1h"],
    ),
    (
        "negative duration",
        doc(extra="errors:\n  circuit_breaker: {reset_after: -30}\n"),
        (),
        "errors.circuit_breaker.reset_after",
        ["a duration cannot be negative"],
    ),
    (
        "bad-row ratio that is not a fraction",
        doc(extra="errors:\n  max_bad_ratio: 5\n"),
        (),
        "errors.max_bad_ratio",
        ["must be a fraction from 0 to 1"],
    ),
    (
        "list where a mapping is expected",
        doc(extra="engine:\n  conf: [spark.sql.shuffle.partitions=4]\n"),
        (),
        "engine.conf",
        ["expected a mapping, got a list"],
    ),
    (
        "credentials entry without a provider",
        doc(extra="credentials:\n  warehouse: {fields: {user: PG_USER}}\n"),
        (),
        "credentials.warehouse.provider",
        ["required key is missing"],
    ),
    (
        "dead-letter sink missing its path",
        doc(extra="errors:\n  dead_letter: {type: files}\n"),
        (),
        "errors.dead_letter.path",
        ["required key is missing"],
    ),
    (
        "validate block on an unknown dataset",
        doc(extra="validate:\n  ordrs: {mode: strict}\n"),
        (),
        "validate.ordrs",
        ["'ordrs' is not defined", "did you mean 'orders'?"],
    ),
    (
        "validate block on a sink",
        doc(extra="validate:\n  out: {mode: strict}\n"),
        (),
        "validate.out",
        ["'out' is a sink, not a dataset"],
    ),
    (
        "unknown metrics reporter",
        doc(extra="metrics: [{type: lgo}]\n"),
        (),
        "metrics[0].type",
        ["unknown metrics reporter type 'lgo'", "did you mean 'log'?"],
    ),
    (
        "a section that is not a mapping",
        doc(sources="sources: [orders, users]\n"),
        (),
        "sources",
        ["expected a mapping of names to blocks"],
    ),
]


@pytest.mark.parametrize(
    ("text", "args", "path", "fragments"),
    [
        pytest.param(text, args, path, fragments, id=case)
        for case, text, args, path, fragments in CASES
    ],
)
def test_one_mistake(
    tmp_path: Path, text: str, args: tuple[str, ...], path: str, fragments: list[str]
) -> None:
    result = validate(write(tmp_path, text), *args)
    assert_config_error(result, f"{path}: ", *fragments)


def test_cases_are_distinct() -> None:
    assert len({case for case, *_ in CASES}) == len(CASES)
    assert len({text + "".join(args) for _, text, args, *_ in CASES}) == len(CASES)
    assert len(CASES) >= 18


def test_the_valid_base_pipeline_is_valid(tmp_path: Path) -> None:
    result = validate(write(tmp_path, VALID))
    assert result.exit_code == 0, result.output
    assert "valid (2 sources, 1 transform, 1 sink)" in result.output


def test_not_yaml(tmp_path: Path) -> None:
    result = validate(write(tmp_path, "version: 1\nname: demo\nsources: [orders\n"))
    assert_config_error(result, "cannot parse", "pipeline.yaml", "line 4", "fix the file's syntax")


def test_not_a_mapping(tmp_path: Path) -> None:
    result = validate(write(tmp_path, "- orders\n- users\n"))
    assert_config_error(result, "a pipeline file must be a mapping")


def test_missing_file(tmp_path: Path) -> None:
    result = validate(tmp_path / "nope.yaml")
    assert_config_error(result, "cannot read pipeline file", "nope.yaml", "check the path")


def test_bad_json_and_toml(tmp_path: Path) -> None:
    result = validate(write(tmp_path, '{"version": 1,', "pipeline.json"))
    assert_config_error(result, "cannot parse", "pipeline.json")
    result = validate(write(tmp_path, "version = \n", "pipeline.toml"))
    assert_config_error(result, "cannot parse", "pipeline.toml")


# --- every mistake in one output ------------------------------------------------------------


def test_several_mistakes_are_reported_together(tmp_path: Path) -> None:
    """The acceptance test: a misspelled key, an unknown input and a cycle, in one run."""
    text = doc(
        sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, delimeter: ";"}
  users: {type: files, format: csv, path: data/users.csv}
""",
        transforms="""\
transforms:
  enriched: {type: join, inputs: [ordrs, users], on: [user_id]}
  a: {type: filter, inputs: [b], condition: "x > 1"}
  b: {type: filter, inputs: [a], condition: "x > 1"}
""",
        sinks="""\
sinks:
  out: {type: files, input: enriched, path: out/}
  loop: {type: files, input: b, path: loop/}
""",
    )
    result = validate(write(tmp_path, text))
    assert_config_error(
        result,
        "3 problems in the pipeline",
        "sources.orders.delimeter: unknown key 'delimeter'",
        "did you mean 'delimiter'?",
        "transforms.enriched.inputs[0]: unknown input 'ordrs'",
        "did you mean 'orders'?",
        "transforms.a.inputs: cycle: a -> b -> a",
    )


def test_load_mistakes_do_not_hide_bind_mistakes(tmp_path: Path) -> None:
    text = doc(
        transforms="""\
transforms:
  enriched: {type: join, inputs: [ordrs, users], on: [user_id]}
""",
        extra="sorces: {}\n",
    )
    result = validate(write(tmp_path, text))
    assert_config_error(result, "sorces: unknown key", "transforms.enriched.inputs[0]")


# --- what loads -----------------------------------------------------------------------------


def test_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_TEST_DATA", "/data/in")
    monkeypatch.delenv("ETL_TEST_MISSING", raising=False)
    text = doc(
        sources="""\
sources:
  orders: {type: files, format: csv, path: "${ETL_TEST_DATA}/orders.csv"}
  users: {type: files, format: csv, path: "${ETL_TEST_MISSING:-fallback}/users.csv"}
""",
        transforms=TRANSFORMS
        + """\
  priced: {type: sql, inputs: [enriched], query: "SELECT '$$5', '$${ETL_TEST_DATA}', 'a $ b'"}
""",
    )
    spec = config.load(write(tmp_path, text))
    assert spec.sources["orders"].options["path"] == "/data/in/orders.csv"
    assert spec.sources["users"].options["path"] == "fallback/users.csv"
    assert spec.transforms["priced"].options["query"] == "SELECT '$5', '${ETL_TEST_DATA}', 'a $ b'"


def test_interpolation_default_is_not_used_when_the_variable_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_TEST_DATA", "")
    text = doc(
        sources="""\
sources:
  orders: {type: files, format: csv, path: "${ETL_TEST_DATA:-x}orders.csv"}
  users: {type: files, format: csv, path: data/users.csv}
"""
    )
    assert config.load(write(tmp_path, text)).sources["orders"].options["path"] == "orders.csv"


def test_set_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_TEST_DATA", "/mnt")
    path = write(tmp_path, VALID)
    spec = config.load(
        path,
        overrides=[
            "sources.orders.path=other/orders.csv",
            "sources.users.header=false",
            "sources.users.path=${ETL_TEST_DATA}/users.csv",
            "errors.max_bad_rows=10",
            "errors.retry.initial=500ms",
            "transforms.enriched.on=[user_id, day]",
        ],
    )
    assert spec.sources["orders"].options["path"] == "other/orders.csv"
    assert spec.sources["users"].options["header"] is False
    assert spec.sources["users"].options["path"] == "/mnt/users.csv"
    assert spec.errors.max_bad_rows == 10
    assert spec.errors.retry is not None and spec.errors.retry.initial == "500ms"
    assert spec.transforms["enriched"].options["on"] == ["user_id", "day"]
    # the file itself is untouched
    assert config.load(path).sources["orders"].options["path"] == "data/orders.csv"


def test_set_fixes_a_mistake_on_the_command_line(tmp_path: Path) -> None:
    text = doc(
        sources="""\
sources:
  orders: {type: files, format: xml, path: data/orders.csv}
  users: {type: files, format: csv, path: data/users.csv}
"""
    )
    path = write(tmp_path, text)
    assert validate(path).exit_code == 2
    result = validate(path, "--set", "sources.orders.format=parquet")
    assert result.exit_code == 0, result.output


def test_load_raises_config_error_with_issues(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, doc(head="version: 2\n")))
    assert [issue.path for issue in caught.value.issues] == ["name", "version"]


def test_yaml_on_key_stays_a_string(tmp_path: Path) -> None:
    text = doc(
        sources="""\
sources:
  orders: {type: files, format: csv, path: data/orders.csv, header: true}
  users: {type: files, format: csv, path: data/users.csv, header: off}
""",
        transforms="""\
transforms:
  enriched:
    type: join
    inputs: [orders, users]
    on: [user_id]
    how: left
""",
    )
    spec = config.load(write(tmp_path, text))
    options = spec.transforms["enriched"].options
    assert list(options) == ["on", "how"]
    assert options["on"] == ["user_id"]
    assert True not in options
    assert spec.sources["orders"].options["header"] is True
    assert spec.sources["users"].options["header"] == "off"  # YAML 1.2: only true/false


FULL_YAML = """\
version: 1
name: demo
engine: {master: "local[2]", conf: {spark.sql.shuffle.partitions: "4"}}
credentials:
  warehouse: {provider: env, fields: {user: PG_USER, password: PG_PASSWORD}}
sources:
  orders: {type: files, format: csv, path: data/orders.csv, header: true,
           read_schema: "id BIGINT, user_id BIGINT"}
  users: {type: files, format: json, path: data/users.json}
transforms:
  enriched: {type: join, inputs: [orders, users], on: [user_id], how: left}
  daily: {type: sql, inputs: [enriched], query: "SELECT user_id, count(*) AS n FROM enriched"}
validate:
  daily:
    rules: [{not_null: [user_id]}, {range: {column: n, min: 0}, severity: warning}]
    on_failure: quarantine
sinks:
  out: {type: files, input: daily, path: out/, mode: append, on_reject: dead_letter}
errors:
  retry: {attempts: 5, backoff: exponential, initial: 1s, max: 60s, jitter: true}
  dead_letter: {type: files, path: dlq/}
  max_bad_ratio: 0.01
metrics: [{type: log}]
"""

FULL_JSON = """\
{
  "version": 1,
  "name": "demo",
  "engine": {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": "4"}},
  "credentials": {
    "warehouse": {"provider": "env", "fields": {"user": "PG_USER", "password": "PG_PASSWORD"}}
  },
  "sources": {
    "orders": {"type": "files", "format": "csv", "path": "data/orders.csv", "header": true,
               "read_schema": "id BIGINT, user_id BIGINT"},
    "users": {"type": "files", "format": "json", "path": "data/users.json"}
  },
  "transforms": {
    "enriched": {"type": "join", "inputs": ["orders", "users"], "on": ["user_id"], "how": "left"},
    "daily": {"type": "sql", "inputs": ["enriched"],
              "query": "SELECT user_id, count(*) AS n FROM enriched"}
  },
  "validate": {
    "daily": {
      "rules": [{"not_null": ["user_id"]},
                {"range": {"column": "n", "min": 0}, "severity": "warning"}],
      "on_failure": "quarantine"
    }
  },
  "sinks": {
    "out": {"type": "files", "input": "daily", "path": "out/", "mode": "append",
            "on_reject": "dead_letter"}
  },
  "errors": {
    "retry": {"attempts": 5, "backoff": "exponential", "initial": "1s", "max": "60s",
              "jitter": true},
    "dead_letter": {"type": "files", "path": "dlq/"},
    "max_bad_ratio": 0.01
  },
  "metrics": [{"type": "log"}]
}
"""

FULL_TOML = """\
version = 1
name = "demo"
metrics = [{type = "log"}]

[engine]
master = "local[2]"
conf = {"spark.sql.shuffle.partitions" = "4"}

[credentials.warehouse]
provider = "env"
fields = {user = "PG_USER", password = "PG_PASSWORD"}

[sources.orders]
type = "files"
format = "csv"
path = "data/orders.csv"
header = true
read_schema = "id BIGINT, user_id BIGINT"

[sources.users]
type = "files"
format = "json"
path = "data/users.json"

[transforms.enriched]
type = "join"
inputs = ["orders", "users"]
on = ["user_id"]
how = "left"

[transforms.daily]
type = "sql"
inputs = ["enriched"]
query = "SELECT user_id, count(*) AS n FROM enriched"

[validate.daily]
rules = [{not_null = ["user_id"]}, {range = {column = "n", min = 0}, severity = "warning"}]
on_failure = "quarantine"

[sinks.out]
type = "files"
input = "daily"
path = "out/"
mode = "append"
on_reject = "dead_letter"

[errors]
max_bad_ratio = 0.01
retry = {attempts = 5, backoff = "exponential", initial = "1s", max = "60s", jitter = true}
dead_letter = {type = "files", path = "dlq/"}
"""


def test_json_and_toml_load_the_same_model_as_yaml(tmp_path: Path) -> None:
    specs = {
        suffix: config.load(write(tmp_path, text, f"pipeline.{suffix}"))
        for suffix, text in (("yaml", FULL_YAML), ("json", FULL_JSON), ("toml", FULL_TOML))
    }
    same = {suffix: attrs.evolve(spec, source=None) for suffix, spec in specs.items()}
    assert same["json"] == same["yaml"]
    assert same["toml"] == same["yaml"]
    yaml_spec = specs["yaml"]
    assert yaml_spec.transforms["enriched"].options == {"on": ["user_id"], "how": "left"}
    assert yaml_spec.errors.dead_letter is not None
    assert yaml_spec.errors.dead_letter.options == {"path": "dlq/"}
    for suffix in specs:  # and each of them is a valid pipeline
        result = validate(tmp_path / f"pipeline.{suffix}")
        assert result.exit_code == 0, result.output


# --- no Spark -------------------------------------------------------------------------------


@pytest.mark.slow
def test_validate_does_not_import_pyspark(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_YAML)
    code = textwrap.dedent(
        f"""
        import sys
        from etl_core.cli import main
        main(["validate", {str(path)!r}], standalone_mode=False)
        spark = sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j"))
        print("spark modules:", spark)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ETL_LOAD_PLUGINS": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "valid (2 sources, 2 transforms, 1 sink)" in done.stdout
    assert "spark modules: []" in done.stdout, done.stdout


def test_an_input_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: twice\n"
        "sources:\n  a: {type: files, format: csv, path: a.csv}\n"
        "transforms:\n  j: {type: sql, inputs: [a, a], query: SELECT 1}\n"
        "sinks:\n  o: {type: files, input: j, path: o}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "transforms.j.inputs[1]: input 'a' is listed twice" in result.stderr
