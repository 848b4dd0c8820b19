"""Hook specifications of the ``etl`` plugin project.

Plugins implement these with :data:`etl_core.hookimpl`. An implementation may accept fewer
arguments than a spec names, so arguments added later break no plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from etl_core.markers import hookspec

if TYPE_CHECKING:
    from etl_core.api import (
        CredentialProvider,
        Extractor,
        Loader,
        MetricsReporter,
        RunMetrics,
        StageMetrics,
        StateStore,
        Transformer,
        Validator,
    )


# Registration: one hook per component kind.


@hookspec
def etl_register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    """Register extractor types (sources).

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per :class:`~etl_core.api.Extractor` subclass.

    :param register: adds one extractor type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_transformers(register: Callable[[type[Transformer]], None]) -> None:
    """Register transformer types.

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per :class:`~etl_core.api.Transformer` subclass.

    :param register: adds one transformer type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_validators(register: Callable[[type[Validator]], None]) -> None:
    """Register validator types.

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per :class:`~etl_core.api.Validator` subclass.

    :param register: adds one validator type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_loaders(register: Callable[[type[Loader]], None]) -> None:
    """Register loader types (sinks, dead-letter sinks).

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per :class:`~etl_core.api.Loader` subclass.

    :param register: adds one loader type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_credential_providers(
    register: Callable[[type[CredentialProvider]], None],
) -> None:
    """Register credential provider types (``env``, ``vault``, ...).

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per provider class.

    :param register: adds one provider type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_metrics_reporters(register: Callable[[type[MetricsReporter]], None]) -> None:
    """Register metrics reporter types.

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per reporter class.

    :param register: adds one reporter type; on a name clash the first one stays (warning).
    """


@hookspec
def etl_register_state_stores(register: Callable[[type[StateStore]], None]) -> None:
    """Register state store backends for incremental bookmarks.

    Called once when a plugin host is built, for every loaded plugin.
    Returns nothing; call ``register`` once per backend class.

    :param register: adds one backend; on a name clash the first one stays (warning).
    """


# Lifecycle: for observers. The host calls these and logs, never raises, their errors.


@hookspec
def etl_run_started(pipeline: str, run_id: str, run_key: str) -> None:
    """A run has started: the config is valid and the run lock is held.

    Called once per run, before any source is read. Returns nothing.

    :param pipeline: the pipeline's name.
    :param run_id: the run's id (a UUID, or what ``--run-id`` gave).
    :param run_key: 12 hex digits naming the run's staging and lock.
    """


@hookspec
def etl_stage_finished(pipeline: str, run_id: str, stage: StageMetrics) -> None:
    """A dataset finished one stage (extract, validate, transform, load).

    Called once per dataset and stage, when that stage's numbers are settled: right after the
    Spark action that staged a sink, for its ``load`` stage and the ``extract`` and
    ``transform`` stages that action computed (the stages of one sink's lineage run in one
    action); after the check step for ``validate`` stages, datasets that dead-lettered rows
    and the dead letters' own ``load`` stages; when the run ends for stages no action
    finished (a failed run) and rows a publish refused. Counts are ``None`` where no action
    computed them. Returns nothing.

    :param pipeline: the pipeline's name.
    :param run_id: the run's id.
    :param stage: the counts observed for that dataset and stage.
    """


@hookspec
def etl_run_finished(metrics: RunMetrics) -> None:
    """A run ended, successfully or not (``metrics.status`` says which).

    Called once per run, after publishing or discarding. Returns nothing.

    :param metrics: everything the run observed.
    """
