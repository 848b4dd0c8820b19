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

Helpers: :func:`moto_process` starts a moto server of your own, e.g. one that enforces
authentication after its first ``N`` calls (``INITIAL_NO_AUTH_ACTION_COUNT``), for tests of
per-component credentials; :func:`free_port`, :func:`answers`, :func:`server_process`.

Conformance suites for connector authors (see :mod:`etl_core.testing.conformance`):
:class:`ExtractorConformance`, :class:`LoaderConformance`, :class:`TypeCase`; for credential
providers (:mod:`etl_core.testing.credentials`) :class:`CredentialProviderConformance`; for
metrics reporters (:mod:`etl_core.testing.reporters`) :class:`MetricsReporterConformance`; for
transformers (:mod:`etl_core.testing.transformers`) :class:`TransformerConformance`; for state
stores (:mod:`etl_core.testing.state`) :class:`StateStoreConformance`.
"""

from __future__ import annotations

from etl_core.testing.conformance import ExtractorConformance, LoaderConformance, TypeCase
from etl_core.testing.credentials import CredentialProviderConformance
from etl_core.testing.fixtures import etl_host, etl_run, etl_spark, moto_server, run_pipeline
from etl_core.testing.harness import SECRET_MARKER
from etl_core.testing.probe import PROBE_FIELDS, Probe, ProbeExtractor, ProbeOptions, etl_probe
from etl_core.testing.reporters import MetricsReporterConformance
from etl_core.testing.servers import MotoServer, answers, free_port, moto_process, server_process
from etl_core.testing.state import StateStoreConformance
from etl_core.testing.transformers import TransformerConformance

__all__ = [
    "PROBE_FIELDS",
    "SECRET_MARKER",
    "CredentialProviderConformance",
    "ExtractorConformance",
    "LoaderConformance",
    "MetricsReporterConformance",
    "MotoServer",
    "Probe",
    "ProbeExtractor",
    "ProbeOptions",
    "StateStoreConformance",
    "TransformerConformance",
    "TypeCase",
    "answers",
    "etl_host",
    "etl_probe",
    "etl_run",
    "etl_spark",
    "free_port",
    "moto_process",
    "moto_server",
    "run_pipeline",
    "server_process",
]
