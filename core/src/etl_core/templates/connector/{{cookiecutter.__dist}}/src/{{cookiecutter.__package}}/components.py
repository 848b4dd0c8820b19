{%- set kinds = cookiecutter.kinds.split(',') | map('trim') | list -%}
{%- set cls = cookiecutter.__class -%}
{%- set ext, load = 'extractor' in kinds, 'loader' in kinds -%}
{%- set cred, rep = 'credential_provider' in kinds, 'metrics_reporter' in kinds -%}
"""The ``{{ cookiecutter.name }}`` components: the driver side of each. Rows move on the
executors ({{ cookiecutter.__package }}.datasource); the backing system is reached through
{{ cookiecutter.__package }}.client."""

from __future__ import annotations
{% if load %}
import json
{%- endif %}
{%- if load or cred %}
import os
{%- endif %}
{%- if load %}
import shutil
{%- endif %}
{%- if cred %}
from collections.abc import Mapping
{%- endif %}
from pathlib import Path
{%- if ext or load %}
from typing import TYPE_CHECKING{% if load %}, ClassVar{% endif %}
{%- endif %}

{% if load -%}
import attrs
{% endif -%}
from etl_core import (
{%- if ext or load %}
    Context,
{%- endif %}
{%- if cred %}
    CredentialProvider,
{%- endif %}
{%- if ext %}
    Extractor,
{%- endif %}
{%- if load %}
    LiveRuns,
    Loader,
    LoadError,
{%- endif %}
{%- if rep %}
    MetricsReporter,
{%- endif %}
{%- if ext or load %}
    PermanentError,
{%- endif %}
{%- if rep %}
    RunMetrics,
{%- endif %}
{%- if cred %}
    Secret,
    SecretError,
{%- endif %}
{%- if load %}
    Staged,
{%- endif %}
{%- if ext or load %}
    datasources,
{%- endif %}
)

from {{ cookiecutter.__package }} import client
from {{ cookiecutter.__package }}.options import (
{%- if cred %}
    CredentialOptions,
{%- endif %}
{%- if rep %}
    ReporterOptions,
{%- endif %}
{%- if load %}
    SinkOptions,
{%- endif %}
{%- if ext %}
    SourceOptions,
{%- endif %}
)
{%- if ext or load %}

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
{%- endif %}

NAME = "{{ cookiecutter.name }}"


{%- if ext or load %}


def _table(ctx: Context, path: str, role: str) -> tuple[Path, client.Table]:
    """The table a block names, or an error naming the block and the fix."""
    folder = ctx.path(path)
    table = client.read_table(folder)
    if table is None:
        raise PermanentError(
            f"{role} {ctx.dataset!r}: {folder} holds no {NAME} table ({client.TABLE}); check "
            "`path`, or create the table first"
        )
    return folder, table
{%- endif %}
{%- if ext %}


class {{ cls }}Extractor(Extractor):
    """Read a table: one Spark partition per data file, read on the executors."""

    name = NAME
    Options = SourceOptions
    capabilities = frozenset({"batch", "partitioned_read"})

    def extract(self, ctx: Context, options: SourceOptions) -> DataFrame:
        from {{ cookiecutter.__package }}.datasource import {{ cls }}DataSource

        folder, table = _table(ctx, options.path, "source")
        schema = ctx.read_schema or table.schema
        if not table.files:
            ctx.report_rows(0)  # empty: Spark may optimise a count of it away
            return ctx.spark.createDataFrame([], schema)
        files = [str(folder / name) for name in table.files]
        plan = {"files": files, "what": f"source {ctx.dataset!r}"}
        return datasources.read(ctx.spark, {{ cls }}DataSource, schema, plan)
{%- endif %}
{%- if load %}


class {{ cls }}Loader(Loader):
    """Stage the rows as files under ``_etl/tmp/<run_key>/<sink index>/`` (on the executors),
    then publish them by listing them in ``_table.json``, replaced atomically together with the
    run's ledger entry: a publish is all or nothing, and a second publish of a run changes
    nothing. Every path derives from the run key and the options, so a resumed run (a rebuilt
    ``Staged``) finds its staging."""

    name = NAME
    Options = SinkOptions
    #: streaming: a stream's micro-batches are staged and published as runs (each its run id)
    capabilities = frozenset({"batch", "streaming"})
    modes: ClassVar[tuple[str, ...]] = ("append", "overwrite", "error")

    @staticmethod
    def _staging(ctx: Context, folder: Path) -> Path:
        return folder / client.STAGING / ctx.run_key / str(ctx.sink_index or 0)

    def stage(self, ctx: Context, df: DataFrame, options: SinkOptions) -> Staged:
        from {{ cookiecutter.__package }}.datasource import {{ cls }}DataSource

        folder, table = _table(ctx, options.path, "sink")
        self._refuse_existing(ctx, folder, table)
        columns = ctx.spark.createDataFrame([], table.schema).columns
        unknown = [c for c in df.columns if c not in columns]
        if unknown:
            raise PermanentError(
                f"sink {ctx.dataset!r}: {folder} has no column(s) {', '.join(unknown)} (it has "
                f"{', '.join(columns)}); select only those columns before the sink"
            )
        staging = self._staging(ctx, folder)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        plan = {"staging": str(staging), "what": f"sink {ctx.dataset!r}"}
        datasources.write(df, {{ cls }}DataSource, plan)
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key)

    @staticmethod
    def _refuse_existing(ctx: Context, folder: Path, table: client.Table) -> None:
        if ctx.mode == "error" and table.files and ctx.run_key not in table.runs:
            raise LoadError(
                f"sink {ctx.dataset!r}: {folder} already holds data and the sink's mode is "
                "`error`; set `mode: append` or `mode: overwrite`"
            )

    def publish(self, ctx: Context, staged: Staged, options: SinkOptions) -> None:
        from {{ cookiecutter.__package }}.datasource import COMMITTED

        folder = ctx.path(options.path)
        staging = self._staging(ctx, folder)
        with client.locked(folder):
            _, table = _table(ctx, options.path, "sink")
            if ctx.run_key in table.runs:  # published before: the ledger makes this a no-op
                self.discard(ctx, staged, options)
                return
            self._refuse_existing(ctx, folder, table)
            moved = []
            for name in json.loads((staging / COMMITTED).read_text()):
                final = f"{ctx.run_key}-{staged.index}-{name}"
                if (staging / name).exists() or not (folder / final).exists():
                    os.replace(staging / name, folder / final)  # else: moved by a publish that died
                moved.append(final)
            kept = () if ctx.mode == "overwrite" else table.files
            runs = (*table.runs, ctx.run_key)
            client.write_table(folder, attrs.evolve(table, files=(*kept, *moved), runs=runs))
        for name in set(table.files) - set(kept):  # replaced by an overwrite: unlisted now
            (folder / name).unlink(missing_ok=True)
        self.discard(ctx, staged, options)

    def discard(self, ctx: Context, staged: Staged, options: SinkOptions) -> None:
        staging = self._staging(ctx, ctx.path(options.path))  # staged may be rebuilt: no details
        shutil.rmtree(staging, ignore_errors=True)
        for parent in (staging.parent, staging.parent.parent, staging.parent.parent.parent):
            try:
                parent.rmdir()  # only when empty: another sink of the run may stage here
            except OSError:
                break

    def clean_stale(self, ctx: Context, options: SinkOptions, live_runs: LiveRuns) -> list[str]:
        """Drop the staging of runs that died, and data files no ``_table.json`` lists (a
        publish that died before its commit, or files an overwrite replaced)."""
        folder = ctx.path(options.path)
        root, dropped = folder / client.STAGING, []
        for run_dir in sorted(root.glob("*")) if root.is_dir() else []:
            if live_runs.stale(run_dir.name, run_dir.stat().st_mtime):
                shutil.rmtree(run_dir, ignore_errors=True)
                dropped.append(str(run_dir))
        for parent in (root, root.parent):
            try:
                parent.rmdir()
            except OSError:
                break
        with client.locked(folder):
            table = client.read_table(folder)
            listed = set(table.files) if table else set()
            for path in sorted(folder.glob("*.jsonl")):
                run_key = path.name.split("-", 1)[0]
                if path.name not in listed and live_runs.stale(run_key, path.stat().st_mtime):
                    path.unlink()
                    dropped.append(str(path))
        return dropped
{%- endif %}
{%- if cred %}


class {{ cls }}CredentialProvider(CredentialProvider):
    """Read a credentials entry from a JSON file of entries (``{entry: {field: value}}``).
    Messages name the file and the entry, never a value."""

    name = NAME
    Options = CredentialOptions
    #: the secrets file when an entry names none
    FILE_VARIABLE = "ETL_{{ cookiecutter.name|upper|replace('-', '_') }}_SECRETS"

    def resolve(self, options: CredentialOptions) -> Mapping[str, Secret]:
        file = options.file or os.environ.get(self.FILE_VARIABLE)
        if not file:
            raise SecretError(
                f"{NAME} credentials: no secrets file; set `file` or ${self.FILE_VARIABLE}"
            )
        try:
            entries = client.read_entries(Path(file))
        except (OSError, ValueError) as exc:  # never the text: it may quote a value
            raise SecretError(
                f"{NAME} credentials: cannot read {file}: {type(exc).__name__}"
            ) from None
        entry = entries.get(options.path)
        if not isinstance(entry, dict):
            raise SecretError(f"{NAME} credentials: {file} holds no entry {options.path!r}")
        return {field: Secret(str(value)) for field, value in entry.items()}

    @classmethod
    def options_for_reference(cls, path: str) -> CredentialOptions:
        return CredentialOptions(path=path)
{%- endif %}
{%- if rep %}


class {{ cls }}Reporter(MetricsReporter):
    """Append one JSON line per stage of each run to a file."""

    name = NAME
    Options = ReporterOptions

    def report(self, metrics: RunMetrics, options: ReporterOptions) -> None:
        run = metrics.to_dict()
        head = {"pipeline": metrics.pipeline, "run_id": metrics.run_id, "status": metrics.status}
        rows = [{**head, **stage} for stage in run["stages"]]
        client.write_rows(Path(options.path), rows, append=True)
{%- endif %}
