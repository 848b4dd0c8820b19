"""Secrets never leak: distinctive planted values, resolved through the ``env``, ``file`` and
``vault`` providers, are handed to components that fail the careless way real drivers do —
their exceptions quote the connection string, on the driver and on Spark's executors — and
the values must appear nowhere: the process's stdout and stderr, the run report, the metrics
log, any file under the work dir (dead letters, manifests, staging, state), exception messages,
``etl validate`` and ``etl explain``, and the Spark session's conf and plans.

The failing runs are real ``etl`` processes (whole-process output is the point); the rest runs
in-process on the shared session. Stages covered: extract, transform, validate (a quality rule
that aborts the run), load.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import secrets
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from etl_plugin_vault import plugin as vault_plugin

from etl_core import EtlError
from etl_core.cli import main
from etl_core.config import check
from etl_core.plugins import get_plugin_host
from etl_core.run.runner import build_datasets, run

pytestmark = pytest.mark.slow

#: a test plugin, installed for the subprocesses through a .dist-info folder on PYTHONPATH
PROBE_SOURCE = '''
"""Components that leak the secrets they get, as careless drivers do."""

from pathlib import Path
import shutil

import attrs
from etl_core import Extractor, Loader, PermanentError, Secret, Staged, Transformer, hookimpl


@attrs.frozen
class LeakyOptions:
    path: str = "rows.csv"
    fail: str = "none"
    user: Secret | None = None
    password: Secret | None = None
    token: Secret | None = None
    api_key: Secret | None = None


def dsn(options):
    return (
        f"db://{options.user.reveal()}:{options.password.reveal()}@127.0.0.1/"
        f"?token={options.token.reveal()}&key={options.api_key.reveal()}"
    )


class LeakySource(Extractor):
    name = "leaky_source"
    Options = LeakyOptions

    def extract(self, ctx, options):
        from pyspark.sql import functions as F

        if options.fail == "extract":
            raise PermanentError(f"cannot connect to {dsn(options)}")
        df = (
            ctx.spark.read.option("password", options.password.reveal())
            .schema("id INT, name STRING")
            .option("header", "true")
            .csv(str(ctx.path(options.path)))
        )
        rejected = df.filter("id = 3").select(
            F.array(
                F.struct(
                    F.lit("probe").alias("rule"),
                    F.lit("id 3 is malformed").alias("message"),
                    F.lit("error").alias("severity"),
                )
            ).alias("errors"),
            F.to_json(F.struct("*")).alias("row"),
        )
        ctx.dead_letter("extract", rejected)
        return df.filter("id != 3")


class LeakyTransform(Transformer):
    name = "leaky_transform"
    Options = LeakyOptions

    def transform(self, ctx, inputs, options):
        from pyspark.sql import functions as F

        (df,) = inputs.values()
        if options.fail != "transform":
            return df.withColumn("checked", F.lit("ok"))
        where = dsn(options)

        def lookup(value):
            raise ValueError(f"lookup of {value} failed against {where}")

        return df.withColumn("checked", F.udf(lookup, "string")("id"))


class LeakySink(Loader):
    name = "leaky_sink"
    Options = LeakyOptions

    def stage(self, ctx, df, options):
        if options.fail == "load":
            raise RuntimeError(f"COPY refused by {dsn(options)}")
        staging = ctx.path(options.path) / "_staging" / ctx.run_key
        df.write.mode("overwrite").parquet(str(staging))
        return Staged(ctx.dataset, ctx.sink_index, ctx.run_key, {"staging": str(staging)})

    def publish(self, ctx, staged, options):
        Path(staged.details["staging"]).rename(ctx.path(options.path) / staged.run_key)

    def discard(self, ctx, staged, options):
        if options.fail == "load":
            raise RuntimeError(f"cleanup refused by {dsn(options)}")
        shutil.rmtree(staged.details.get("staging", "/nonexistent"), ignore_errors=True)


@hookimpl
def etl_register_extractors(register):
    register(LeakySource)


@hookimpl
def etl_register_transformers(register):
    register(LeakyTransform)


@hookimpl
def etl_register_loaders(register):
    register(LeakySink)
'''


class Planted:
    """The planted values and where they live."""

    def __init__(self, root: Path, openbao) -> None:
        tag = secrets.token_hex(4)
        self.password = f"zqVAULTpw{tag}Xk"  # in OpenBao (vault provider, KV v2)
        self.token = f"zqENVtok{tag}Wm"  # in the environment (env provider)
        self.api_key = f"zqFILEkey{tag}Yp"  # in a private file (file provider)
        self.values = (self.password, self.token, self.api_key)
        self.vault_path = f"etl/redaction-{tag}"
        openbao.client().secrets.kv.v2.create_or_update_secret(
            self.vault_path,
            {"username": "etl_probe", "password": self.password},
            mount_point="secret",
        )
        self.secret_file = root / "secrets" / "api_key"
        self.secret_file.parent.mkdir(mode=0o700)
        self.secret_file.write_text(self.api_key + "\n")
        self.secret_file.chmod(0o600)
        self.site = root / "site"
        self.site.mkdir()
        (self.site / "etl_redaction_probe.py").write_text(PROBE_SOURCE)
        dist = self.site / "etl_redaction_probe-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: etl-redaction-probe\nVersion: 0.1\n"
        )
        (dist / "entry_points.txt").write_text("[etl]\nleaky = etl_redaction_probe\n")
        self.env = {
            **openbao.env(),
            "ETL_PLANTED_TOKEN": self.token,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(self.site), os.environ.get("PYTHONPATH")])
            ),
        }

    def leaks(self, text: str) -> list[str]:
        return [value for value in self.values if value in text]

    def pipeline(self, work: Path) -> Path:
        """A work dir with the pipeline file and its input; returns the pipeline file."""
        work.mkdir(parents=True, exist_ok=True)
        (work / "rows.csv").write_text("id,name\n1,a\n2,b\n3,c\n4,d\n")
        secret_options = {  # user and password from Vault, token from env, api_key from a file
            "credentials": "db",
            "token": {"secret": "env:ETL_PLANTED_TOKEN"},
            "api_key": {"secret": f"file:{self.secret_file}"},
        }

        spec = {
            "name": "redaction",
            "credentials": {"db": {"provider": "vault", "path": self.vault_path}},
            "sources": {"rows": {"type": "leaky_source", **secret_options}},
            "transforms": {
                "checked": {"type": "leaky_transform", "inputs": ["rows"], **secret_options}
            },
            "sinks": {
                "files_out": {"type": "files", "input": "checked", "path": "files_out"},
                "leaky_out": {
                    "type": "leaky_sink",
                    "input": "checked",
                    "path": "leaky_out",
                    **secret_options,
                },
            },
            "errors": {"dead_letter": {"type": "files", "path": "dlq", "format": "jsonl"}},
            "metrics": [{"type": "log", "path": str(work / "metrics.jsonl")}],
        }
        path = work / "pipeline.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def planted(openbao, tmp_path_factory) -> Planted:
    return Planted(tmp_path_factory.mktemp("redaction"), openbao)


def work_dir_leaks(planted: Planted, work: Path) -> dict[str, list[str]]:
    """Every file under the work dir (text or binary) that holds a planted value."""
    found = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = [value for value in planted.values if value.encode() in data]
        if hits:
            found[str(path.relative_to(work))] = hits
    return found


def etl(planted: Planted, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    etl_script = Path(sys.executable).with_name("etl")
    return subprocess.run(
        [str(etl_script), *args],
        cwd=work,  # Spark's own scratch files (spark-warehouse, metastore_db) land here too
        env={**os.environ, **planted.env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("stage", "override", "expected"),
    [
        ("extract", "sources.rows.fail=extract", "cannot connect to db://***:***@"),
        ("transform", "transforms.checked.fail=transform", "failed against db://***:***@"),
        (
            "validate",
            'validate.checked={rules: [{sql: "id < 3"}], on_failure: abort}',
            "data quality checks failed",
        ),
        pytest.param(
            "load",
            "sinks.leaky_out.fail=load",
            "COPY refused by db://***:***@",
        ),
    ],
)
def test_a_failing_etl_process_leaks_no_secret(planted, tmp_path, stage, override, expected):
    work = tmp_path / stage
    pipeline = planted.pipeline(work)
    done = etl(planted, work, "run", str(pipeline), "--set", override)
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr, f"the run did not fail where intended:\n{done.stderr}"
    assert planted.leaks(done.stdout) == [], done.stdout
    assert planted.leaks(done.stderr) == [], done.stderr
    metrics = (work / "metrics.jsonl").read_text()
    assert '"status": "failed"' in metrics
    assert planted.leaks(metrics) == []
    assert work_dir_leaks(planted, work) == {}


def test_validate_and_explain_show_no_secret(planted, tmp_path, etl_spark, monkeypatch):
    work = tmp_path / "inspect"
    pipeline = planted.pipeline(work)
    validate = etl(planted, work, "validate", str(pipeline))
    assert validate.returncode == 0, validate.stderr
    assert planted.leaks(validate.stdout + validate.stderr) == []

    for name, value in planted.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(planted.site))
    etl_logger = logging.getLogger("etl")  # the CLI sets its handler up: undo that afterwards
    for attribute in ("handlers", "propagate", "level"):
        monkeypatch.setattr(etl_logger, attribute, copy.copy(getattr(etl_logger, attribute)))
    explained = CliRunner().invoke(main, ["explain", str(pipeline)])
    assert explained.exit_code == 0, explained.output
    assert "leaky_source" in explained.output
    assert planted.leaks(explained.output) == []


def test_in_process_errors_spark_conf_and_plans_hold_no_secret(
    planted, tmp_path, etl_spark, monkeypatch
):
    for name, value in planted.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(planted.site))
    import etl_redaction_probe

    host = get_plugin_host(
        autoload=False, extra=[("vault", vault_plugin), ("leaky", etl_redaction_probe)]
    )
    work = tmp_path / "in_process"
    pipeline = planted.pipeline(work)

    bound = check(pipeline, host=host, overrides=["sources.rows.fail=extract"])
    with pytest.raises(EtlError) as caught:
        run(bound, host, spark=etl_spark)
    error = caught.value
    rendered = "".join(traceback.format_exception(error))
    assert "cannot connect to db://***:***@" in str(error)
    assert planted.leaks(str(error) + repr(error) + rendered) == []
    assert planted.leaks(error.metrics.error or "") == []  # type: ignore[attr-defined]

    bound = check(pipeline, host=host)
    metrics = run(bound, host, spark=etl_spark)
    assert metrics.status == "succeeded" and metrics.dead_letters == 1
    assert list((work / "dlq").rglob("part-*")), "the dead letters were not published"
    assert work_dir_leaks(planted, work) == {}

    conf = etl_spark.sparkContext.getConf().getAll() + list(etl_spark.conf.getAll.items())
    assert planted.leaks(repr(conf)) == []
    frames = build_datasets(bound, host, etl_spark)
    assert set(frames) == {"rows", "checked"}
    for name, df in frames.items():
        plans = []
        for mode in ("extended", "formatted", "cost"):
            buffer = io.StringIO()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sys, "stdout", buffer)
                df.explain(mode=mode)
            plans.append(buffer.getvalue())
        execution = df._jdf.queryExecution()  # every node's fields, not only what explain shows
        plans += [execution.analyzed().toJSON(), execution.optimizedPlan().toJSON()]
        for plan in plans:
            assert planted.leaks(plan) == [], f"the plan of {name} holds a secret:\n{plan}"
