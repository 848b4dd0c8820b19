"""Schema checks and quality rules on real data with planted defects (shared Spark session)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from etl_core.cli import main
from etl_core.errors import ConfigError, ValidationFailed

pytestmark = pytest.mark.spark

ROWS = 3000
SCHEMA = "id BIGINT, email STRING, amount DOUBLE, status STRING"


def planted() -> list[dict]:
    """3,000 orders with known defects: null amounts, duplicate ids, bad emails, odd statuses."""
    rows = []
    for i in range(1, ROWS + 1):
        rows.append(
            {
                "id": 1 if i % 1000 == 0 else i,
                "email": "broken" if i % 100 == 0 else f"u{i}@x.org",
                "amount": None if i % 250 == 0 else float(i % 500 - (5 if i % 333 == 0 else 0)),
                "status": "weird" if i % 7 == 0 else "paid",
            }
        )
    return rows


def write(folder: Path, rows: list[dict]) -> None:
    lines = ["id,email,amount,status"]
    for r in rows:
        amount = "" if r["amount"] is None else r["amount"]
        lines.append(f"{r['id']},{r['email']},{amount},{r['status']}")
    (folder / "orders.csv").write_text("\n".join(lines) + "\n")


def pipeline(rules: list, on_failure: str = "quarantine", **validate) -> dict:
    return {
        "name": "quality",
        "sources": {
            "orders": {
                "type": "files",
                "format": "csv",
                "path": "orders.csv",
                "read_schema": SCHEMA,
            }
        },
        "validate": {"orders": {"rules": rules, "on_failure": on_failure, **validate}},
        "sinks": {"out": {"type": "files", "input": "orders", "path": "out", "mode": "overwrite"}},
        "errors": {"dead_letter": {"type": "files", "path": "dlq"}},
    }


RULES = [
    {"not_null": "amount"},
    {"unique": ["id"]},
    {"regex": {"column": "email", "pattern": "^[^@]+@[^@]+$"}},
    {"range": {"column": "amount", "min": 0, "max": 495}},
    {"accepted_values": {"column": "status", "values": ["paid"]}, "severity": "warning"},
    {"sql": "length(email) < 40", "name": "short_email"},
    {"row_count": {"min": 100, "max": 10000}},
]


def expected_failures(rows: list[dict]) -> dict[str, set[int]]:
    """Row positions breaking each rule, computed in plain Python."""
    ids = [r["id"] for r in rows]
    return {
        "not_null(amount)": {i for i, r in enumerate(rows) if r["amount"] is None},
        "unique(id)": {i for i, r in enumerate(rows) if ids.count(r["id"]) > 1},
        "regex(email)": {i for i, r in enumerate(rows) if "@" not in r["email"]},
        "range(amount)": {
            i for i, r in enumerate(rows) if r["amount"] is not None and not 0 <= r["amount"] <= 495
        },
        "accepted_values(status)": {i for i, r in enumerate(rows) if r["status"] != "paid"},
        "short_email": set(),
    }


def dead_letters(folder: Path) -> list[dict]:
    files = [f for f in folder.rglob("*.jsonl") if "_etl" not in f.parts]
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_quarantine_counts_every_rule_exactly(etl_run, tmp_path):
    rows = planted()
    write(tmp_path, rows)
    metrics = etl_run(pipeline(RULES))
    expected = expected_failures(rows)
    results = {r.rule: r for r in metrics.quality}
    for rule, positions in expected.items():
        assert results[rule].failed_rows == len(positions), rule
        assert results[rule].passed == (not positions), rule
    assert results["row_count"].passed and results["row_count"].failed_rows is None
    assert results["accepted_values(status)"].severity == "warning"

    error_rules = ["not_null(amount)", "unique(id)", "regex(email)", "range(amount)"]
    broken = set().union(*(expected[r] for r in error_rules))
    stage = metrics.stage("orders", "validate")
    assert (stage.rows_in, stage.rows_out, stage.dead_lettered) == (
        ROWS,
        ROWS - len(broken),
        len(broken),
    )
    assert stage.rows_out + stage.dead_lettered == stage.rows_in
    assert pq.read_table(tmp_path / "out").num_rows == ROWS - len(broken)

    records = dead_letters(tmp_path / "dlq")
    assert len(records) == len(broken) == metrics.dead_letters
    by_row = {}
    for record in records:
        assert record["stage"] == "validate" and record["dataset"] == "orders"
        row = json.loads(record["row"])
        by_row.setdefault(row["id"], []).append(sorted(e["rule"] for e in record["errors"]))
        if "not_null(amount)" in by_row[row["id"]][-1]:
            assert row["amount"] is None  # the column that broke the rule, written as null
    # row 500 (position 499): null amount and a bad email, both listed in one record
    assert ["not_null(amount)", "regex(email)"] in by_row[500]
    # each record lists every rule the row broke, warnings included, and at least one error
    assert all(any(e["severity"] == "error" for e in r["errors"]) for r in records)
    severities = {e["rule"]: e["severity"] for r in records for e in r["errors"]}
    assert severities["accepted_values(status)"] == "warning"


def test_abort_publishes_nothing(etl_run, tmp_path):
    write(tmp_path, planted())
    with pytest.raises(ValidationFailed) as failure:
        etl_run(pipeline(RULES, on_failure="abort"))
    message = str(failure.value)
    assert "validate.orders: not_null(amount)" in message and "regex(email)" in message
    assert "accepted_values" not in message  # a warning never fails the run
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))
    assert not dead_letters(tmp_path / "dlq")
    assert failure.value.metrics.published == []


def test_continue_reports_and_loads_everything(etl_run, tmp_path):
    write(tmp_path, planted())
    metrics = etl_run(pipeline(RULES, on_failure="continue"))
    assert pq.read_table(tmp_path / "out").num_rows == ROWS
    assert {r.rule for r in metrics.quality if not r.passed} >= {"unique(id)", "regex(email)"}
    assert metrics.dead_letters == 0


def test_dataset_rules(etl_run, tmp_path):
    write(tmp_path, planted()[:10])
    (tmp_path / "events.csv").write_text("id,at\n1,2020-01-01T00:00:00\n2,2021-06-01T00:00:00\n")
    spec = pipeline([{"row_count": {"min": 11}}], on_failure="abort")
    with pytest.raises(ValidationFailed, match=r"row_count: 10 rows \(expected 11\.\.\)"):
        etl_run(spec)
    stale = {
        "name": "fresh",
        "sources": {
            "events": {
                "type": "files",
                "format": "csv",
                "path": "events.csv",
                "read_schema": "id INT, at TIMESTAMP",
            }
        },
        "validate": {"events": {"rules": [{"freshness": {"column": "at", "max_age": "1d"}}]}},
        "sinks": {"out": {"type": "files", "input": "events", "path": "ev"}},
    }
    with pytest.raises(ValidationFailed, match=r"newest at is .* old"):
        etl_run(stale)
    stale["validate"]["events"]["rules"][0]["freshness"]["max_age"] = "36500d"
    assert etl_run(stale).quality[0].passed


def test_range_bounds_can_be_exclusive(etl_run, tmp_path):
    rows = [{"id": i, "email": "a@b", "amount": float(i), "status": "paid"} for i in range(5)]
    write(tmp_path, rows)
    rule = {"range": {"column": "amount", "min": 0, "max": 4, "min_inclusive": False}}
    metrics = etl_run(pipeline([rule], on_failure="continue"))
    assert metrics.quality[0].failed_rows == 1  # amount 0


@pytest.mark.parametrize("pattern", ["@", "x.o", "^u1", "^u1@", "é-", "^", "u1\\d"])
def test_regex_without_metacharacters_matches_exactly_as_java_regex(etl_spark, pattern):
    """Plain-text patterns (and ``^`` + text) skip Java's regex; the flags must not change."""
    from pyspark.sql import functions as F

    from etl_core.builtins.quality import Regex

    texts = ["u1@x.org", "u12@x.org", "broken", "x.o", "xyo", "é-1", "", None, "nu1@"]
    df = etl_spark.createDataFrame([(t,) for t in texts], "email STRING")
    check = Regex().validate(None, df, Regex.Options(column="email", pattern=pattern))
    got = [r[0] for r in df.select(check.flag).collect()]
    want = [r[0] for r in df.select(~F.col("email").rlike(pattern)).collect()]
    assert got == want


def test_schema_mismatch_lists_every_column(etl_run, tmp_path):
    write(tmp_path, planted()[:5])
    declared = "id INT, email STRING, total DOUBLE, status STRING NOT NULL"
    with pytest.raises(ValidationFailed) as failure:
        etl_run(pipeline([], on_failure="abort", schema=declared, mode="strict"))
    message = str(failure.value)
    assert "validate.orders.schema" in message
    assert "id: expected int, found bigint" in message
    assert "total: missing (expected double)" in message
    assert "amount: unexpected column (double)" in message


def test_additive_allows_new_columns_and_coerce_casts_safely(etl_run, tmp_path):
    write(tmp_path, planted()[:5])
    additive = pipeline([], schema="id BIGINT, email STRING", mode="additive")
    assert etl_run(additive).status == "succeeded"
    coerce = pipeline([], schema="id DECIMAL(20,0), email STRING, amount DOUBLE", mode="coerce")
    coerce["validate"]["orders"]["mode"] = "coerce"
    etl_run(coerce)
    assert str(pq.read_table(tmp_path / "out").schema.field("id").type) == "decimal128(20, 0)"
    unsafe = pipeline([], on_failure="abort", schema="email INT", mode="coerce")
    with pytest.raises(ValidationFailed, match=r"email: expected int, found string \(not a safe"):
        etl_run(unsafe)


def test_declared_not_null_is_checked_row_by_row(etl_run, tmp_path):
    rows = planted()[:500]
    write(tmp_path, rows)
    spec = pipeline([], schema="id BIGINT, email STRING, amount DOUBLE NOT NULL, status STRING")
    spec["validate"]["orders"]["mode"] = "additive"
    metrics = etl_run(spec)
    result = next(r for r in metrics.quality if r.rule == "schema:not_null(amount)")
    assert result.failed_rows == 2  # rows 250 and 500


def test_rule_on_a_missing_column_is_raised_before_any_job(etl_run, etl_spark, tmp_path):
    from etl_core import config
    from etl_core.plugins import get_plugin_host
    from etl_core.run.runner import explain

    write(tmp_path, planted()[:5])
    with pytest.raises(ConfigError) as failure:
        etl_run(pipeline([{"not_null": "nope"}]))
    assert failure.value.path == "validate.orders.rules[0]"
    assert not (tmp_path / "out").exists()
    host = get_plugin_host()
    bound = config.check(data=pipeline([{"not_null": "amont"}]), base_dir=tmp_path, host=host)
    with pytest.raises(ConfigError) as failure:  # `etl explain` says it too, with a fix
        explain(bound, host, etl_spark)
    (issue,) = failure.value.issues
    assert issue.path == "validate.orders.rules[0]" and "did you mean 'amount'?" in str(issue)


def test_report_file_holds_the_quality_results(tmp_path, etl_spark):
    write(tmp_path, planted())
    (tmp_path / "p.yaml").write_text(json.dumps(pipeline(RULES)))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "p.yaml"), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "unique(id): FAILED (error), 4 rows" in result.stdout
    body = json.loads(report.read_text())
    assert {r["rule"] for r in body["quality"]} >= {"unique(id)", "row_count"}
    assert body["status"] == "succeeded"


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ({"not_nul": ["id"]}, "validate.orders.rules[0].not_nul", "did you mean 'not_null'?"),
        ({"regex": {"column": "email", "pattern": "(["}}, "rules[0].regex", "invalid regex"),
        ({"range": {"column": "amount", "min": 5, "max": 1}}, "rules[0].range", "above max"),
        ({"not_null": ["id"], "severity": "warn"}, "rules[0].severity", "did you mean 'warning'"),
        ({"not_null": ["idd"]}, "rules[0].not_null", "column 'idd' is not in the declared schema"),
        ({"row_count": {}}, "rules[0].row_count", "give `min`, `max` or both"),
        ({"not_null": ["id"], "unique": ["id"]}, "rules[0]", "exactly one rule type"),
    ],
)
def test_rule_mistakes_are_config_errors_without_spark(tmp_path, rule, path, message):
    spec = pipeline([rule], schema=SCHEMA)
    (tmp_path / "p.yaml").write_text(json.dumps(spec))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert path in result.stderr and message in result.stderr
