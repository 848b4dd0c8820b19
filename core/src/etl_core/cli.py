"""The ``etl`` command. Imports neither Spark nor any driver until a run starts.

Exit codes: 0 success, 1 the run failed, 2 a bad pipeline file or bad usage.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from etl_core.errors import EtlError, PreflightFailed
from etl_core.report import render_report

if TYPE_CHECKING:
    from etl_core.config import BoundPipeline
    from etl_core.plugins import PluginHost

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(command: F) -> F:
    """User mistakes and failed runs print one short message; ``--debug`` adds the traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except EtlError as exc:
            if debug:
                traceback.print_exc()
            click.secho(f"error: {exc}", err=True, fg="red")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (click's test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"warning: {text}" if record.levelno == logging.WARNING else text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the final result.")
@click.version_option(package_name="etl-core", prog_name="etl")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """etl: run pipelines of named datasets on Apache Spark."""
    logger = logging.getLogger("etl")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_Plain("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING)
    ctx.obj = {"quiet": quiet}


_set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="PATH=VALUE",
    help="Override a config value, e.g. --set sources.orders.path=data/2024.csv (repeatable).",
)
_pipeline_argument = click.argument("pipeline", type=click.Path(dir_okay=False))
_plaintext_option = click.option(
    "--allow-plaintext-secrets",
    is_flag=True,
    help="Accept plaintext values under secret-looking keys (with a warning).",
)


@contextmanager
def _engine_stopped() -> Iterator[None]:
    """The JVM that the block starts is stopped, and waited for, when the block ends, so that
    the command ends after it (a scheduler may start the next one at once). A session the
    process had before (embedded, tests) is left as it is."""
    from etl_core.run.engine import jvm_up, stop_engine

    if jvm_up():
        yield
        return
    try:
        yield
    finally:
        stop_engine()


def _check(
    pipeline: str, overrides: tuple[str, ...], allow_plaintext_secrets: bool
) -> tuple[BoundPipeline, PluginHost]:
    """The preamble of every pipeline command: a fresh plugin host, then load and bind the
    file, raising every mistake at once (exit 2)."""
    from etl_core import config
    from etl_core.plugins import get_plugin_host

    host = get_plugin_host()
    bound = config.check(
        pipeline, overrides=overrides, host=host, allow_plaintext_secrets=allow_plaintext_secrets
    )
    return bound, host


@main.command()
@_pipeline_argument
@_set_option
@_plaintext_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also resolve credentials, connect to every endpoint once and check input paths and "
    "targets, as `etl run` does before Spark starts (no Spark, no data read).",
)
@_user_errors
def validate(
    pipeline: str, overrides: tuple[str, ...], allow_plaintext_secrets: bool, connect: bool
) -> None:
    """Check a pipeline file without reading data (no Spark)."""
    bound, host = _check(pipeline, overrides, allow_plaintext_secrets)
    if connect:
        from etl_core.run.preflight import preflight_alone

        took = preflight_alone(bound, host)
        click.echo(f"{pipeline}: credentials, connections and paths checked in {took:.2f} s")
    spec = bound.spec
    if not click.get_current_context().find_root().params.get("quiet"):
        for name in bound.plan.unused:
            click.echo(f"warning: dataset {name!r} feeds no sink", err=True)
    counts = [(len(spec.sources), "source"), (len(spec.transforms), "transform")]
    counts.append((len(spec.sinks), "sink"))
    shown = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
    click.echo(f"{pipeline}: valid ({shown})")


@main.command()
@_pipeline_argument
@_set_option
@click.option("--master", help="Spark master for this run, e.g. local[2] or spark://host:7077.")
@click.option("--run-id", help="Name this run (orchestrators pass their task id).")
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    help="Serve /health, /ready and /metrics on this port while the run is live.",
)
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the health server (0.0.0.0 for probes from outside the host).",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the run report (counts, quality results) as JSON to this file.",
)
@click.option(
    "--start-over",
    is_flag=True,
    help="Streams: the checkpoint is new (deleted or moved) and the sinks' targets took another "
    "query's batches; accept it and go on from this checkpoint.",
)
@_plaintext_option
@click.pass_context
@_user_errors
def run(
    ctx: click.Context,
    pipeline: str,
    overrides: tuple[str, ...],
    master: str | None,
    run_id: str | None,
    health_port: int | None,
    health_host: str,
    report_file: str | None,
    start_over: bool,
    allow_plaintext_secrets: bool,
) -> None:
    """Run a pipeline: stage every sink, check, then publish.

    SIGTERM or Ctrl-C before publishing discards every staging and exits non-zero; while
    publishing, the run finishes first."""
    from contextlib import ExitStack

    from etl_core.health import HealthServer, RunControl, RunInterrupted, graceful_shutdown
    from etl_core.progress import ConsoleProgress
    from etl_core.run.runner import run as run_pipeline

    quiet = ctx.obj["quiet"]
    if master:
        overrides = (*overrides, f"engine.master={master}")
    bound, host = _check(pipeline, overrides, allow_plaintext_secrets)

    control = RunControl()
    try:
        with ExitStack() as stack:
            stack.enter_context(_engine_stopped())  # last out: the process ends after the JVM
            if health_port is not None:
                stack.enter_context(HealthServer(control, health_port, health_host))
            stack.enter_context(graceful_shutdown(control))
            progress = stack.enter_context(ConsoleProgress(quiet=quiet))
            metrics = run_pipeline(
                bound, host, run_id=run_id, progress=progress, control=control,
                start_over=start_over,
            )  # fmt: skip
    except EtlError as exc:
        if control.stop_signal is not None and not getattr(exc, "published", ()):
            raise RunInterrupted(control.stop_signal) from None
        partial = getattr(exc, "metrics", None)
        if partial is not None:
            _write_report(report_file, partial)
            if not quiet and not isinstance(exc, PreflightFailed):  # else nothing ran
                click.echo(render_report(partial), err=True)
        raise
    _write_report(report_file, metrics)
    click.echo(render_report(metrics))
    if not quiet and sys.stderr.isatty():
        from etl_core.run.engine import class_data_missing

        if class_data_missing(bound.spec.engine):
            click.echo("· tip: `etl engine prepare` (once) makes later runs start sooner", err=True)


def _write_report(path: str | None, metrics: Any) -> None:
    if path is not None:
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps(metrics.to_dict(), indent=1, default=str) + "\n")


@main.group(invoke_without_command=True)
@click.option("--strict", is_flag=True, help="Fail on a plugin that cannot be loaded.")
@click.pass_context
@_user_errors
def plugins(ctx: click.Context, strict: bool) -> None:
    """List installed plugins, their components and capabilities."""
    from etl_core.plugins import get_plugin_host

    host = get_plugin_host(strict=strict)
    ctx.obj["host"] = host
    if ctx.invoked_subcommand is not None:
        return
    for info in host.plugins():
        click.echo(
            f"{info.distribution} {info.version}"
            + ("" if info.name == info.distribution else f"  (entry point {info.name!r})")
        )
        for kind, name in info.components:
            caps = ", ".join(sorted(host.component(kind, name).capabilities)) or "-"
            click.echo(f"  {kind.replace('_', ' '):<20} {name:<14} {caps}")


@plugins.command("show")
@click.argument("name")
@click.pass_context
@_user_errors
def plugins_show(ctx: click.Context, name: str) -> None:
    """Show a component's options: types, defaults and an example block."""
    from etl_core.describe import describe_component
    from etl_core.errors import UnknownComponentError
    from etl_core.plugins import KINDS

    host = ctx.obj["host"]
    found = [kind for kind in KINDS if name in host.components(kind)]
    if not found:
        import difflib

        known = sorted({n for kind in KINDS for n in host.components(kind)})
        close = difflib.get_close_matches(name, known, n=1)
        raise UnknownComponentError(
            "component", name, known, f"did you mean {close[0]!r}?" if close else None
        )
    click.echo("\n\n".join(describe_component(host, kind, name) for kind in found))


@main.command()
@_pipeline_argument
@_set_option
@_plaintext_option
@_user_errors
def explain(pipeline: str, overrides: tuple[str, ...], allow_plaintext_secrets: bool) -> None:
    """Print the DAG and each dataset's Spark plan; errors that need Spark's analyzer show here."""
    from etl_core.run.runner import explain as explain_pipeline

    bound, host = _check(pipeline, overrides, allow_plaintext_secrets)
    with _engine_stopped():
        text = explain_pipeline(bound, host)
    click.echo(text)


@main.command()
@_pipeline_argument
@_set_option
@_plaintext_option
@_user_errors
def clean(pipeline: str, overrides: tuple[str, ...], allow_plaintext_secrets: bool) -> None:
    """Remove staging left by runs that are no longer live (killed or crashed)."""
    from etl_core.run.runner import clean_stale

    bound, host = _check(pipeline, overrides, allow_plaintext_secrets)
    dropped = clean_stale(bound, host)
    for item in dropped:
        click.echo(f"removed {item}")
    click.echo(f"{len(dropped)} stale staging area(s) removed")


@main.group()
def engine() -> None:
    """The Spark engine runs start."""


@engine.command("prepare")
@click.argument("pipeline", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Make it again even if there is one.")
@_plaintext_option
@_user_errors
def engine_prepare(pipeline: str | None, force: bool, allow_plaintext_secrets: bool) -> None:
    """Record the classes a Spark session loads into a class-data archive that later sessions'
    JVMs map at start: about 4 s off every run's start. Once per Java, Spark and jars (with
    PIPELINE: its engine's jars and settings); again after an upgrade."""
    from etl_core.config.model import EngineSpec
    from etl_core.run.engine import prepare_class_data

    spec = EngineSpec()
    if pipeline is not None:
        spec = _check(pipeline, (), allow_plaintext_secrets)[0].spec.engine
    path, took = prepare_class_data(spec, force, say=lambda text: click.echo(f"· {text}", err=True))
    size = path.stat().st_size / 2**20
    if took is None:
        click.echo(f"already prepared: {path} ({size:.0f} MiB); --force makes it again")
    else:
        click.echo(f"prepared {path} ({size:.0f} MiB) in {took:.0f} s")


@main.group()
def new() -> None:
    """Create a new project from a template."""


@new.command("connector")
@click.argument("name")
@click.option(
    "--kinds",
    default="extractor,loader",
    show_default=True,
    help="Comma-separated: extractor, loader, credential_provider, metrics_reporter.",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to create etl-plugin-NAME/.",
)
@click.option("--description", help="The package's one-line description.")
@_user_errors
def new_connector(name: str, kinds: str, output_dir: str, description: str | None) -> None:
    """Create etl-plugin-NAME: a connector package whose components work against a folder of
    JSON-lines files and pass etl's conformance suites before you change anything."""
    from pathlib import Path

    from etl_core.scaffold import new_connector as render

    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    folder = render(name, chosen, Path(output_dir), description)
    click.echo(f"created {folder} ({', '.join(chosen)})")
    click.echo("next:")
    click.echo(f"  pip install -e '{folder}[test]'")
    click.echo(f"  pytest {folder}")


@main.group()
def dlq() -> None:
    """Work with dead letters (rows a run rejected)."""


@dlq.command("replay")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--pipeline",
    "pipeline",
    required=True,
    type=click.Path(dir_okay=False),
    help="The pipeline file to feed the dead letters into (after the fix).",
)
@click.option(
    "--from-stage",
    type=click.Choice(["extract", "validate", "transform"]),
    help="Replay only the records of this stage.",
)
@_set_option
@_plaintext_option
@click.pass_context
@_user_errors
def dlq_replay(
    ctx: click.Context,
    path: str,
    pipeline: str,
    from_stage: str | None,
    overrides: tuple[str, ...],
    allow_plaintext_secrets: bool,
) -> None:
    """Feed the dead letters under PATH back into a pipeline; replaying twice is a no-op."""
    from pathlib import Path

    from etl_core.progress import ConsoleProgress
    from etl_core.run.runner import replay

    bound, host = _check(pipeline, overrides, allow_plaintext_secrets)
    with _engine_stopped(), ConsoleProgress(quiet=ctx.obj["quiet"]) as progress:
        metrics = replay(bound, host, Path(path), from_stage=from_stage, progress=progress)
    click.echo(render_report(metrics))
