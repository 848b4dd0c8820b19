"""pytest plugin for etl and for connector authors (loaded through the ``pytest11`` entry point).

Fixtures:

- ``etl_spark``: one local SparkSession for the whole test session, started on first use.
- ``etl_host``: a fresh plugin host per test, built-ins only (entry points not loaded).
- ``etl_run``: load, bind and run a pipeline (a mapping or a file) on the shared session.
- ``etl_probe``: a :class:`Probe`: an extractor that records the options (credentials filled
  in) each run gave it; ``etl_probe.host(...)`` is a plugin host with it registered.
- ``moto_server``: one ``moto_server`` process (S3, CloudWatch, IAM… on a free port of
  127.0.0.1) for the whole test session, in its default mode (any key is accepted). Tests
  share it: give each test its own bucket or namespace.
- ``password_postgres``: a :class:`PasswordPostgres`, a throwaway PostgreSQL cluster that
  checks passwords (scram-sha-256) on a free port, for the whole test session (the machine's
  own server trusts every local connection, so it cannot refuse a wrong password).

Helpers: :func:`moto_process` starts a moto server of your own, e.g. one that enforces
authentication after its first ``N`` calls (``INITIAL_NO_AUTH_ACTION_COUNT``), for tests of
per-component credentials; :func:`password_postgres_cluster` the same for PostgreSQL;
:func:`free_port`, :func:`answers`, :func:`server_process`.

Conformance suites for connector authors (see :mod:`etl_core.testing.conformance`):
:class:`ExtractorConformance`, :class:`LoaderConformance`, :class:`TypeCase`; for credential
providers (:mod:`etl_core.testing.credentials`) :class:`CredentialProviderConformance`; for
metrics reporters (:mod:`etl_core.testing.reporters`) :class:`MetricsReporterConformance`; for
transformers (:mod:`etl_core.testing.transformers`) :class:`TransformerConformance`; for state
stores (:mod:`etl_core.testing.state`) :class:`StateStoreConformance`.
"""

from __future__ import annotations

from etl_core.testing import selection
from etl_core.testing.conformance import ExtractorConformance, LoaderConformance, TypeCase
from etl_core.testing.credentials import CredentialProviderConformance
from etl_core.testing.fixtures import (
    etl_host,
    etl_run,
    etl_spark,
    moto_server,
    password_postgres,
    run_pipeline,
)
from etl_core.testing.harness import SECRET_MARKER
from etl_core.testing.probe import PROBE_FIELDS, Probe, ProbeExtractor, ProbeOptions, etl_probe
from etl_core.testing.reporters import MetricsReporterConformance
from etl_core.testing.selection import applies
from etl_core.testing.servers import (
    MotoServer,
    PasswordPostgres,
    answers,
    free_port,
    moto_process,
    password_postgres_cluster,
    server_process,
)
from etl_core.testing.state import StateStoreConformance
from etl_core.testing.transformers import TransformerConformance

# this plugin's pytest hooks: conformance cases selected by declared capabilities and modes
pytest_configure = selection.pytest_configure
pytest_collection_modifyitems = selection.pytest_collection_modifyitems
pytest_terminal_summary = selection.pytest_terminal_summary

__all__ = [
    "PROBE_FIELDS",
    "SECRET_MARKER",
    "CredentialProviderConformance",
    "ExtractorConformance",
    "LoaderConformance",
    "MetricsReporterConformance",
    "MotoServer",
    "PasswordPostgres",
    "Probe",
    "ProbeExtractor",
    "ProbeOptions",
    "StateStoreConformance",
    "TransformerConformance",
    "TypeCase",
    "answers",
    "applies",
    "etl_host",
    "etl_probe",
    "etl_run",
    "etl_spark",
    "free_port",
    "moto_process",
    "moto_server",
    "password_postgres",
    "password_postgres_cluster",
    "run_pipeline",
    "server_process",
]
