"""The notebook API (``etl_core.Pipeline``) on the shared Spark session, and
docs/notebook.ipynb executed in a real Jupyter kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pyarrow.parquet as pq
import pytest

from etl_core import Pipeline, RunReport, Transformer, hookimpl
from etl_core.api import RunMetrics, StageMetrics
from etl_core.config import load
from etl_core.errors import ConfigError, EtlError
from etl_core.plugins import get_plugin_host
from etl_core.report import render_report

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
DOCS = REPO / "docs"


def quickstart_copy(folder: Path) -> Path:
    """The quickstart's pipeline and data in ``folder`` (runs write beside the file)."""
    shutil.copy(QUICKSTART / "pipeline.yaml", folder / "pipeline.yaml")
    shutil.copytree(QUICKSTART / "data", folder / "data")
    return folder / "pipeline.yaml"


def expected_paid_orders() -> int:
    """Counted in plain Python from the quickstart's files: paid orders of known users."""
    users = {
        int(line.split(",")[0])
        for line in (QUICKSTART / "data" / "users.csv").read_text().splitlines()[1:]
        if line.strip()
    }
    orders = [
        json.loads(line)
        for line in (QUICKSTART / "data" / "orders.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return sum(1 for o in orders if o["status"] == "paid" and o["user_id"] in users)


def write_users(folder: Path, rows: int = 10) -> None:
    lines = ["user_id,name"] + [f"{i},user{i}" for i in range(1, rows + 1)]
    (folder / "users.csv").write_text("\n".join(lines) + "\n")


def in_code(**extra: object) -> dict:
    spec: dict = {
        "name": "nb",
        "sources": {
            "users": {
                "type": "files",
                "format": "csv",
                "path": "users.csv",
                "read_schema": "user_id BIGINT, name STRING",
            }
        },
        "transforms": {
            "small": {"type": "filter", "inputs": ["users"], "condition": "user_id <= 4"}
        },
        "sinks": {
            "out": {
                "type": "files",
                "input": "small",
                "path": "out",
                "format": "parquet",
                "mode": "overwrite",
            }
        },
    }
    spec.update(extra)
    return spec


# --- without Spark ------------------------------------------------------------------------


def test_import_etl_core_stays_free_of_spark_and_the_runner():
    code = (
        "import sys, etl_core\n"
        "heavy = [m for m in ('pyspark', 'etl_core.notebook', 'etl_core.run.runner') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from etl_core import Pipeline, RunReport\n"
        "assert Pipeline.__module__ == 'etl_core.notebook', Pipeline.__module__\n"
        "assert 'pyspark' not in sys.modules\n"
        "assert 'Pipeline' in dir(etl_core)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        import etl_core

        etl_core.Nope  # noqa: B018


def test_validate_raises_every_issue_at_once(tmp_path):
    broken = in_code(
        sources={"users": {"type": "files", "format": "csvv", "path": "users.csv"}},
        sinks={"out": {"type": "files", "input": "smal", "path": "out"}},
        unknown_section=1,
    )
    with pytest.raises(ConfigError) as info:
        Pipeline(broken, base_dir=tmp_path).validate()
    paths = {issue.path for issue in info.value.issues}
    assert {"unknown_section", "sources.users.format", "sinks.out.input"} <= paths
    assert "did you mean 'small'" in str(info.value)


def test_validate_returns_the_pipeline_and_needs_no_spark(tmp_path):
    pipeline = Pipeline(in_code(), base_dir=tmp_path)
    assert pipeline.validate() is pipeline
    assert pipeline.datasets == ("users", "small")
    assert pipeline.sinks == ("out",)
    assert pipeline.name == "nb"
    assert pipeline.spec.base_dir == tmp_path.resolve()


def test_from_file_checks_the_file_with_overrides(tmp_path):
    path = quickstart_copy(tmp_path)
    pipeline = Pipeline.from_file(path).validate()
    assert pipeline.datasets == ("users", "orders", "orders_with_users", "paid_orders")
    assert pipeline.spec.base_dir == tmp_path.resolve()
    bad = Pipeline.from_file(path, overrides=["transforms.paid_orders.inputs=[nowhere]"])
    with pytest.raises(ConfigError, match=r"transforms\.paid_orders\.inputs"):
        bad.validate()
    with pytest.raises(ConfigError, match="cannot read pipeline file"):
        Pipeline.from_file(tmp_path / "missing.yaml").validate()


def test_plaintext_secrets_are_refused_unless_allowed(tmp_path):
    spec = in_code()
    spec["sinks"]["out"]["password"] = "hunter2"  # not an option of the files sink either
    with pytest.raises(ConfigError, match="plaintext secret"):
        Pipeline(spec, base_dir=tmp_path).validate()
    with pytest.raises(ConfigError) as info:
        Pipeline(spec, base_dir=tmp_path, allow_plaintext_secrets=True).validate()
    assert "plaintext" not in str(info.value)  # only the unknown option is left


def test_a_spec_is_accepted_and_a_path_is_not(tmp_path):
    spec = load(data=in_code(), base_dir=tmp_path)
    assert Pipeline(spec).validate().datasets == ("users", "small")
    assert Pipeline(spec, base_dir=tmp_path / "elsewhere").spec.base_dir == (tmp_path / "elsewhere")
    with pytest.raises(TypeError, match=r"Pipeline\.from_file"):
        Pipeline("pipeline.yaml")  # type: ignore[arg-type]


def test_every_pipeline_has_its_own_host(tmp_path):
    first, second = Pipeline(in_code(), base_dir=tmp_path), Pipeline(in_code(), base_dir=tmp_path)
    assert first.host is not second.host
    assert "files" in first.host.components("extractor")


def test_report_text_is_the_cli_report_and_html_is_escaped():
    metrics = RunMetrics(pipeline="p", run_id="<script>alert('x')</script>", run_key="k")
    metrics.stages += [
        StageMetrics(dataset="a&b", stage="extract", component="files", rows_out=3),
        StageMetrics(dataset="out", stage="load", component="files", rows_out=None),
    ]
    metrics.published.append("<out>")
    metrics.status = "failed"
    metrics.error = 'boom: "x" < 1 & y > 2'
    report = RunReport(metrics)
    assert repr(report) == render_report(metrics)
    html = report._repr_html_()
    assert "<script>" not in html and "<out>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "a&amp;b" in html and "&lt;out&gt;" in html
    assert "boom: &quot;x&quot; &lt; 1 &amp; y &gt; 2" in html
    assert "<td style='text-align:right'>3</td>" in html
    assert "<td style='text-align:right'>unknown</td>" in html  # a failed run's missing count
    assert report.rows("a&b") == 3 and report.rows("out", "load") is None
    with pytest.raises(KeyError, match="no dataset 'zzz'"):
        report.rows("zzz")


# --- on the shared Spark session -----------------------------------------------------------


@pytest.mark.spark
def test_pipeline_reuses_the_active_session(etl_spark, tmp_path):
    assert Pipeline(in_code(), base_dir=tmp_path).spark is etl_spark


@pytest.mark.spark
def test_from_file_inspect_then_run(etl_spark, tmp_path):
    expected = expected_paid_orders()
    assert expected > 0
    pipeline = Pipeline.from_file(quickstart_copy(tmp_path))
    paid = pipeline.dataset("paid_orders")
    assert paid.count() == expected
    assert {"order_id", "user_id", "name", "status"} <= set(paid.columns)
    assert {row.status for row in paid.limit(5).collect()} == {"paid"}
    assert not (tmp_path / "output").exists()  # inspecting writes nothing

    report = pipeline.run(run_id="nb-1")
    assert isinstance(report, RunReport)
    assert (report.status, report.run_id, report.published) == (
        "succeeded",
        "nb-1",
        ["paid_orders_parquet"],
    )
    assert report.rows("paid_orders_parquet") == expected
    assert report.rows("paid_orders") == expected
    assert report.rows("users", "extract") == 20
    assert pq.read_table(tmp_path / "output" / "paid_orders").num_rows == expected
    assert repr(report).startswith("run nb-1 of quickstart: succeeded in ")
    html = report._repr_html_()
    assert "<td style='text-align:left'>paid_orders_parquet</td>" in html
    assert f"<td style='text-align:right'>{expected}</td>" in html


@pytest.mark.spark
def test_built_in_code_run_and_inspect(etl_spark, tmp_path):
    write_users(tmp_path, 10)
    pipeline = Pipeline(in_code(), base_dir=tmp_path)
    report = pipeline.run(run_id="<b>bold</b>")
    assert report.status == "succeeded"
    assert [(s.dataset, s.stage, s.rows_out) for s in report.stages] == [
        ("users", "extract", 10),
        ("small", "transform", 4),
        ("out", "load", 4),
    ]
    assert "&lt;b&gt;bold&lt;/b&gt;" in report._repr_html_()
    assert "<b>" not in report._repr_html_()
    assert pq.read_table(tmp_path / "out").num_rows == 4
    rows = pipeline.dataset("small").orderBy("user_id").limit(5).collect()
    assert [r.user_id for r in rows] == [1, 2, 3, 4]
    assert pipeline.dataset("users").count() == 10


@pytest.mark.spark
def test_datasets_are_cached_until_the_config_changes(etl_spark, tmp_path):
    write_users(tmp_path, 10)
    data = in_code()
    pipeline = Pipeline(data, base_dir=tmp_path)
    small = pipeline.dataset("small")
    assert pipeline.dataset("small") is small
    assert pipeline.dataset("users") is pipeline.dataset("users")

    data["transforms"]["small"]["condition"] = "user_id <= 2"  # the mapping is kept by reference
    changed = pipeline.dataset("small")
    assert changed is not small
    assert changed.count() == 2
    assert pipeline.dataset("small") is changed

    pipeline.run()
    assert pipeline.dataset("small") is not changed  # a run may move bookmarks


@pytest.mark.spark
def test_a_changed_file_is_read_again(etl_spark, tmp_path):
    path = quickstart_copy(tmp_path)
    pipeline = Pipeline.from_file(path)
    paid = pipeline.dataset("paid_orders")
    assert pipeline.dataset("paid_orders") is paid
    path.write_text(path.read_text().replace("status = 'paid'", "status <> 'paid'"))
    other = pipeline.dataset("paid_orders")
    assert other is not paid
    assert {row.status for row in other.collect()} <= {"pending", "refunded", "cancelled"}
    assert "paid" not in {row.status for row in other.collect()}


@attrs.frozen
class ShoutOptions:
    column: str


class Shout(Transformer):
    """A component defined where it is used (a notebook cell), not in an installed plugin."""

    name = "shout"
    Options = ShoutOptions

    def transform(self, ctx, inputs, options):
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        return df.withColumn(options.column, F.upper(options.column))


class InlinePlugin:
    @hookimpl
    def etl_register_transformers(self, register):
        register(Shout)


@pytest.mark.spark
def test_components_defined_in_the_notebook_through_host(etl_spark, tmp_path):
    write_users(tmp_path, 3)
    spec = in_code(transforms={"small": {"type": "shout", "inputs": ["users"], "column": "name"}})
    with pytest.raises(ConfigError, match="unknown transformer type 'shout'"):
        Pipeline(spec, base_dir=tmp_path).validate()
    host = get_plugin_host(extra=[("notebook", InlinePlugin())])
    pipeline = Pipeline(spec, base_dir=tmp_path, host=host)
    assert pipeline.host is host
    assert [r.name for r in pipeline.dataset("small").orderBy("user_id").collect()] == [
        "USER1",
        "USER2",
        "USER3",
    ]
    assert pipeline.run().rows("out") == 3


@pytest.mark.spark
def test_unknown_dataset_names_the_known_ones(etl_spark, tmp_path):
    write_users(tmp_path)
    pipeline = Pipeline(in_code(), base_dir=tmp_path)
    with pytest.raises(KeyError, match="'out' is a sink; its input is 'small'"):
        pipeline.dataset("out")
    with pytest.raises(KeyError, match=r"no dataset 'nope' \(datasets: users, small\)"):
        pipeline.dataset("nope")


@pytest.mark.spark
def test_analysis_errors_surface_as_config_errors(etl_spark, tmp_path):
    write_users(tmp_path)
    spec = in_code(
        transforms={"small": {"type": "filter", "inputs": ["users"], "condition": "nope > 1"}}
    )
    pipeline = Pipeline(spec, base_dir=tmp_path).validate()  # needs Spark's analyzer
    with pytest.raises(ConfigError, match=r"transforms\.small"):
        pipeline.dataset("small")


@pytest.mark.spark
def test_a_failed_run_raises_with_its_report(etl_spark, tmp_path):
    write_users(tmp_path, 10)
    spec = in_code(
        transforms={
            "small": {
                "type": "select",
                "inputs": ["users"],
                "columns": ["user_id", "assert_true(user_id < 5) AS check"],
            }
        }
    )
    with pytest.raises(EtlError) as info:
        Pipeline(spec, base_dir=tmp_path).run(run_id="fails")
    report = info.value.report  # type: ignore[attr-defined]
    assert isinstance(report, RunReport)
    assert report.status == "failed" and report.published == []
    assert report.error
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.parquet"))


# --- the documentation notebook in a real kernel -------------------------------------------


def _runs_this_python(argv: list[str]) -> bool:
    """Whether a kernelspec's command starts the interpreter running the tests (jupyter_client
    replaces a bare ``python``/``python3``/``pythonX.Y`` by ``sys.executable``)."""
    if not argv:
        return False
    exe = argv[0]
    major, minor = sys.version_info[:2]
    if exe in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True
    found = shutil.which(exe) or exe
    return os.path.realpath(found) == os.path.realpath(sys.executable)


@pytest.fixture(scope="session")
def python3_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``python3`` kernelspec that runs this interpreter (so it imports this etl_core).

    ipykernel ships one (and jupyter_client falls back to it). When the one found would start
    another Python (a user-wide spec from another environment), a spec for this interpreter is
    installed into a temporary prefix put first on ``JUPYTER_PATH`` for the session; nothing is
    written to the user's home."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        usable = _runs_this_python(spec.argv)
    except NoSuchKernel:
        usable = False
    if usable:
        yield "python3"
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install(prefix=str(prefix), kernel_name="python3")
    data_dir = str(prefix / "share" / "jupyter")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "JUPYTER_PATH",
            os.pathsep.join(filter(None, [data_dir, os.environ.get("JUPYTER_PATH")])),
        )
        assert _runs_this_python(KernelSpecManager().get_kernel_spec("python3").argv)
        yield "python3"


def _text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_docs_notebook_runs(python3_kernel):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(DOCS / "notebook.ipynb", as_version=4)
    nbformat.validate(nb)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name=python3_kernel,
        resources={"metadata": {"path": str(DOCS)}},
    )
    client.execute()  # raises CellExecutionError on any cell that fails

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors

    def cell_with(source: str) -> dict:
        return next(cell for cell in code if source in cell.source)

    report = cell_with("report = pipeline.run()")
    html = [o["data"]["text/html"] for o in report.outputs if "text/html" in o.get("data", {})]
    assert html and "succeeded" in html[0] and "totals_parquet" in html[0]
    assert "problems in the pipeline" in _text(cell_with("except ConfigError"))
    assert _text(cell_with("paid.count()")).strip() == "4"
    count = cell_with('quickstart.dataset("paid_orders").count()')
    assert _text(count).strip() == str(expected_paid_orders())
    assert "toPandas" not in "".join(cell.source for cell in code)
