"""Bad input never ends in a traceback: `etl validate` answers every malformed file, `--set`
value and impossible pipeline with exit 2 and a message naming the file or the path.

No Spark: everything runs in-process through click's ``CliRunner``. The property test at the
end mutates a valid pipeline at random (hypothesis, a bounded number of examples).
"""

from __future__ import annotations

import gzip
import string
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_core.cli import main
from etl_core.config.load import MAX_NODES

VALID = """\
version: 1
name: demo
sources:
  orders:
    {type: files, format: csv, path: data/orders.csv, read_schema: "id BIGINT, t DECIMAL(10,2)"}
  users: {type: files, format: csv, path: data/users.csv}
transforms:
  enriched: {type: join, inputs: [orders, users], on: [id], how: left}
sinks:
  out: {type: files, input: enriched, path: out/}
"""


@pytest.fixture(autouse=True)
def _builtins_only(monkeypatch):
    monkeypatch.setenv("ETL_LOAD_PLUGINS", "")


def validate(path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["validate", str(path), *args])


def refused(result: Result, *fragments: str) -> str:
    """Exit 2 through the CLI's error path, no traceback, every fragment in the output."""
    output = result.output
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert output.startswith("error: ") and "Traceback" not in output, output
    assert "<unicode string>" not in output and "<pipeline>" not in output, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    return output


def test_the_valid_pipeline_is_valid(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(VALID)
    result = validate(path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        ("name=@prod", ["--set name=@prod: the value is not valid YAML", "name=\"@prod\""]),
        ("name=*prod", ["not valid YAML", "undefined alias"]),
        ("name=[1", ["not valid YAML", "flow sequence"]),
        ("name=a\x01b", ["not valid YAML", "remove the control characters"]),
        ("sources.ordrs.path=x", ["no sources entry 'ordrs'", "did you mean sources.orders?"]),
        ("sinks.nothing_like_it.path=x", ["no sinks entry", "add new blocks in the file"]),
    ],
)  # fmt: skip
def test_bad_set_values_are_refused_with_the_option_named(tmp_path, value, fragments):
    path = tmp_path / "p.yaml"
    path.write_text(VALID)
    refused(validate(path, "--set", value), *fragments)


LATIN_1 = ("# café\n" + VALID).encode("latin-1")
SELF_ALIAS = (VALID + "state: &s {type: file, dir: *s}\n").encode()
DEEP = ("name: x\nsources: " + "[" * 5000 + "]" * 5000 + "\n").encode()
TWICE = VALID.replace("sinks:", "sources: {}\nsinks:").encode()
DATASET_TWICE = VALID.replace("  users:", "  orders: {type: files}\n  users:").encode()
FLOW_VAR = (VALID + "credentials:\n  pg: {provider: env, fields: {host: ${PG_HOST}}}\n").encode()


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (LATIN_1, ["not UTF-8 text (byte 0xe9", "save the file as UTF-8"]),
        (VALID.encode("utf-16"), ["it is UTF-16 text"]),
        (gzip.compress(VALID.encode()), ["it is gzip-compressed"]),
        (SELF_ALIAS, ["line 11", "cannot contain itself"]),
        (DEEP, ["line 2", "nested more than 64"]),
        (TWICE, ["line 9", "'sources' is given twice in one mapping (first on line 3)"]),
        (DATASET_TWICE, ["'orders' is given twice"]),
        (FLOW_VAR, ["line 12", 'quote the value: `"${VAR}"`']),
        (b"name: x\n\tsources: {}\n", ["line 2", "indent with spaces, not tabs"]),
    ],
    ids=[
        "latin-1", "utf-16", "gzip", "self-alias", "deep", "duplicate key",
        "duplicate dataset", "unquoted ${VAR}", "tab",
    ],
)  # fmt: skip
def test_malformed_files_are_refused_with_the_file_and_line(tmp_path, content, fragments):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    refused(validate(path), str(path), *fragments)


def test_an_alias_bomb_is_refused_through_its_cap_without_building_it(tmp_path):
    """Nine levels of nine aliases would be 387 million items: the cap's message says no."""
    lines = ["name: x", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(lines) + "\n")
    refused(validate(path), f"more than {MAX_NODES:,} items")


QUARANTINE = "  orders: {on_failure: quarantine, rules: [{not_null: {columns: [id]}}]}"
PY_REGEX = "  orders: {rules: [{regex: {column: id, pattern: '(?P<x>1)'}}]}"
SECOND_SINK = "path: out/}\n  out2: {type: files, input: orders, path: ./out}"


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("inputs: [orders, users]", "inputs: orders"), ["expected a list, got 'orders'"]),
        (("path: out/}", SECOND_SINK), ["sinks.out2: it writes the same target as sinks.out"]),
        (("path: data/users.csv", "path: ' '"), ["sources.users.path: is empty"]),
        (("DECIMAL(10,2)", "DECIMAL(10,2"), ["sources.orders.read_schema: unbalanced brackets"]),
        (("id BIGINT", "id BIGNT"), ["'BIGNT' is not a Spark SQL type (did you mean BIGINT?)"]),
        (("name: demo", 'name: "demo\\n"'), ["is not a valid pipeline name"]),
        (("type: files, format: csv, path: data/users.csv", "type: csv, path: data/users.csv"),
         ["unknown extractor type 'csv'", "files are `type: files` with `format: csv`"]),
        (("sinks:", f"validate:\n{QUARANTINE}\nsinks:"),
         ["validate.orders.on_failure", "there is no dead-letter sink"]),
        (("sinks:", f"validate:\n{PY_REGEX}\nsinks:"),
         ["`(?P...)` is Python's syntax", "(?<name>...)"]),
    ],
    ids=[
        "inputs a string", "two sinks one folder", "blank path", "bad DDL", "unknown type",
        "name with newline", "csv as a type", "quarantine without dead letters", "python regex",
    ],
)  # fmt: skip
def test_pipelines_that_cannot_work_are_refused(tmp_path, change, fragments):
    path = tmp_path / "p.yaml"
    path.write_text(VALID.replace(*change))
    output = refused(validate(path), *fragments)
    if change[1] == "inputs: orders":
        assert "required key is missing" not in output  # one mistake, one message


def test_java_regex_syntax_is_accepted(tmp_path):
    path = tmp_path / "p.yaml"
    rule = r"{regex: {column: id, pattern: '^\p{Ll}+(?<n>x)\k<n>$'}}"
    path.write_text(VALID.replace("sinks:", f"validate:\n  orders: {{rules: [{rule}]}}\nsinks:"))
    result = validate(path)
    assert result.exit_code == 0, result.output


# --- the property: whatever the mutation, exit 0 or exit 2 with a message, never a traceback --

BASE = yaml.safe_load(VALID)
PATHS = [
    ("name",), ("version",), ("sources",), ("sources", "orders"), ("sources", "orders", "type"),
    ("sources", "orders", "path"), ("sources", "orders", "read_schema"), ("transforms",),
    ("transforms", "enriched", "inputs"), ("transforms", "enriched", "on"), ("sinks",),
    ("sinks", "out", "input"), ("sinks", "out", "mode"), ("errors",), ("state",), ("engine",),
    ("validate",), ("execution",), ("trigger",),
]  # fmt: skip
TEXT = st.text(alphabet=string.printable + "éß€\x00\x7f", max_size=12)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def set_at(data, path, value):
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3),
    overrides=st.lists(st.tuples(st.sampled_from(PATHS), TEXT), max_size=2),
)
def test_validate_never_ends_in_a_traceback(tmp_path, mutations, overrides):
    data = yaml.safe_load(VALID)
    for path, value in mutations:
        set_at(data, path, value)
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    args = [a for path, text in overrides for a in ("--set", f"{'.'.join(path)}={text}")]
    result = validate(file, *args)
    assert result.exit_code in (0, 2), (result.output, result.exception)
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("error: "), result.output
        first = result.output.splitlines()[0]
        assert ": " in first.removeprefix("error: "), first  # a file or path, then the message
