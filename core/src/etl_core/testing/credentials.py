"""The conformance suite for credential providers: inherit it, provide a few hooks, get the
tests. A provider's test module subclasses:

.. code-block:: python

    from etl_core.testing import CredentialProviderConformance

    class TestMyStoreProvider(CredentialProviderConformance):
        provider = "mystore"                     # the provider's type name

        @pytest.fixture
        def entry(self, my_store):               # store self.values(), give the entry's options
            path = my_store.put(self.values())
            return {"path": path}

        @pytest.fixture
        def reference(self, entry):              # an inline reference to the stored password
            return f"{entry['path']}#password"

        @pytest.fixture
        def missing_entry(self, my_store):       # options naming nothing stored, and that name
            return {"path": "etl/missing"}, "etl/missing"

Hooks (fixtures or methods of the subclass):

- ``provider``: the provider's type name.
- ``values()``: the fields to store, by value (default ``user`` and a marker ``password``);
  ``expected()``: the fields an entry for them resolves to (default: ``values()``).
- fixture ``entry``: store ``values()`` in the backing system, return the options of a
  credentials entry (without ``provider``) that reads them.
- fixture ``reference``: the part after ``<provider>:`` of an inline ``{secret: ...}``
  reference to the stored ``password`` (e.g. ``etl/warehouse#password``). Needed only when
  ``inline_references`` is true.
- fixture ``missing_entry``: ``(options, name)``: the options of an entry whose path holds
  nothing, and the text naming that path which the error must contain.
- ``leases(entry)``: how many leases or tokens the backing system holds for the entry now;
  ``None`` (the default) when the provider holds none.
- ``inline_references``: whether the provider takes inline references (default true). When
  false the reference case checks instead that a reference fails with a clear error.

The cases, each run through the core's resolver or a real run (:func:`run_pipeline` on the
shared ``etl_spark`` session, with the probe extractor of :mod:`etl_core.testing.probe` as
the source and the plugin host of the ``credential_host`` fixture, entry points loaded):

- an entry resolves to exactly ``expected()``, each value a :class:`~etl_core.Secret`;
- an inline reference resolves (or, without ``inline_references``, fails saying so);
- an entry whose path holds nothing fails with a :class:`~etl_core.SecretError` naming the
  path and the entry;
- a run fills the probe's options; no stored value shows in the run's metrics, its logs (the
  ``etl`` loggers at DEBUG) or the ``repr`` of the options the probe received;
- a run whose source fails with the values in its message reports an error, metrics and logs
  without them;
- the run closes the provider once, after the source ran, and (with ``leases``) the backing
  system holds leases for the entry during the run and none after it.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from etl_core import config
from etl_core.api import Context, RunMetrics
from etl_core.errors import EtlError, SecretError
from etl_core.plugins import PluginHost
from etl_core.secrets import Secret
from etl_core.testing.fixtures import run_pipeline
from etl_core.testing.harness import SECRET_MARKER
from etl_core.testing.probe import PROBE_FIELDS, Probe, ProbeOptions

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CredentialProviderConformance"]

#: the name of the credentials entry every case uses
ENTRY = "conformance"


class CredentialProviderConformance:
    """Tests every credential provider must pass. Subclass, set ``provider`` and provide the
    hooks; see :mod:`etl_core.testing.credentials`."""

    provider: ClassVar[str]
    inline_references: ClassVar[bool] = True

    # -- hooks the subclass provides -------------------------------------------------------
    def values(self) -> dict[str, str]:
        return {"user": "etl-conformance-user", "password": SECRET_MARKER}

    def expected(self) -> dict[str, str]:
        return self.values()

    @pytest.fixture
    def entry(self) -> dict[str, Any]:
        raise NotImplementedError("provide an `entry` fixture: store values(), return options")

    @pytest.fixture
    def reference(self) -> str:
        raise NotImplementedError("provide a `reference` fixture: the path of an inline reference")

    @pytest.fixture
    def missing_entry(self) -> tuple[dict[str, Any], str]:
        raise NotImplementedError("provide a `missing_entry` fixture: (options, name)")

    def leases(self, entry: Mapping[str, Any]) -> int | None:
        return None

    # -- shared machinery ------------------------------------------------------------------
    @pytest.fixture
    def credential_host(self, etl_probe: Probe) -> PluginHost:
        """The installed plugins and the probe; override to narrow."""
        return etl_probe.host(autoload=True)

    @pytest.fixture
    def run(
        self,
        etl_spark: SparkSession,
        tmp_path: Path,
        credential_host: PluginHost,
        etl_probe: Probe,
    ) -> Callable[..., RunMetrics]:
        """``run(source_options, entry=None)``: one run whose source is the probe; ``entry``
        becomes the credentials entry ``conformance`` of this provider."""

        def runner(source: Mapping[str, Any], entry: Mapping[str, Any] | None = None) -> Any:
            return run_pipeline(
                self.pipeline(etl_probe, tmp_path, source, entry),
                spark=etl_spark,
                host=credential_host,
                base_dir=tmp_path,
            )

        return runner

    def pipeline(
        self,
        probe: Probe,
        tmp_path: Path,
        source: Mapping[str, Any],
        entry: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        credentials = {} if entry is None else {ENTRY: {"provider": self.provider, **entry}}
        out = tmp_path / f"out-{uuid.uuid4().hex[:8]}"
        return {
            "name": "credential_conformance",
            "credentials": credentials,
            "sources": {"probe": {"type": probe.name, **source}},
            "sinks": {"out": {"type": "files", "input": "probe", "path": str(out)}},
        }

    def assert_no_value(self, text: str, where: str) -> None:
        for field, value in self.values().items():
            assert value not in text, f"the value of {field!r} shows in {where}"

    def assert_no_value_in_failure(self, failure: BaseException, caplog: Any) -> None:
        self.assert_no_value(f"{failure!s}\n{failure!r}", "the error")
        self.assert_no_value("".join(traceback.format_exception(failure)), "the traceback")
        metrics = getattr(failure, "metrics", None)
        if metrics is not None:
            self.assert_no_value(str(metrics.to_dict()), "the run's metrics")
        self.assert_no_value(caplog.text, "the logs")

    def assert_probe_fields(self, fields: Iterable[str]) -> None:
        unknown = sorted(set(fields) - set(PROBE_FIELDS))
        assert not unknown, (
            f"the probe takes no field {', '.join(unknown)}; values() may use {PROBE_FIELDS}"
        )

    # -- the cases -------------------------------------------------------------------------
    def test_an_entry_resolves_to_its_fields(self, credential_host, etl_probe, tmp_path, entry):
        from etl_core.run.credentials import Secrets

        data = self.pipeline(etl_probe, tmp_path, {"credentials": ENTRY}, entry)
        bound = config.check(data=data, base_dir=tmp_path, host=credential_host)
        secrets = Secrets(bound, credential_host)
        try:
            fields = secrets.entry(ENTRY)
            assert all(isinstance(value, Secret) for value in fields.values()), fields
            assert {name: repr(value) for name, value in fields.items()} == dict.fromkeys(
                fields, "***"
            )
            assert {name: value.reveal() for name, value in fields.items()} == self.expected()
        finally:
            secrets.close()

    def test_an_inline_reference_resolves(self, run, etl_probe, request):
        if not self.inline_references:
            # Declared unsupported: a reference must then fail clearly, not resolve to nothing.
            secret = {"secret": f"{self.provider}:etl/conformance#password"}
            with pytest.raises(EtlError, match="does not support inline secret references"):
                run({"password": secret})
            assert etl_probe.seen == []
            return
        path = request.getfixturevalue("reference")
        metrics = run({"password": {"secret": f"{self.provider}:{path}"}})
        assert metrics.status == "succeeded"
        (seen,) = etl_probe.seen
        assert isinstance(seen.password, Secret)
        assert seen.password.reveal() == self.values()["password"]
        assert seen.user is None

    def test_a_missing_path_fails_naming_the_reference(
        self, run, etl_probe, entry, missing_entry, caplog
    ):
        caplog.set_level(logging.DEBUG, logger="etl")
        options, name = missing_entry
        with pytest.raises(SecretError) as caught:
            run({"credentials": ENTRY}, options)
        message = str(caught.value)
        assert name in message, f"the error does not name {name!r}: {message}"
        assert f"credentials.{ENTRY}" in message
        assert etl_probe.seen == []
        self.assert_no_value_in_failure(caught.value, caplog)

    def test_a_run_shows_no_value(self, run, etl_probe, entry, caplog):
        self.assert_probe_fields(self.expected())
        caplog.set_level(logging.DEBUG, logger="etl")
        metrics = run({"credentials": ENTRY}, entry)
        assert metrics.status == "succeeded"
        (seen,) = etl_probe.seen
        for field, value in self.expected().items():
            secret = getattr(seen, field)
            assert isinstance(secret, Secret) and secret.reveal() == value, field
        self.assert_no_value(f"{seen!r}\n{seen!s}", "the repr of the options")
        self.assert_no_value(str(metrics.to_dict()), "the run's metrics")
        self.assert_no_value(caplog.text, "the logs")

    def test_a_failing_run_shows_no_value(self, run, etl_probe, entry, caplog):
        self.assert_probe_fields(self.expected())
        caplog.set_level(logging.DEBUG, logger="etl")
        with pytest.raises(EtlError) as caught:
            run({"credentials": ENTRY, "fail": True}, entry)
        (seen,) = etl_probe.seen  # the source ran with the values, then failed naming them
        assert seen.password is not None and seen.password.reveal() == self.values()["password"]
        assert "probe failed as told" in str(caught.value)
        self.assert_no_value_in_failure(caught.value, caplog)

    def test_leases_are_released_at_the_end_of_the_run(
        self, run, etl_probe, entry, credential_host, monkeypatch
    ):
        provider_class = credential_host.component("credential_provider", self.provider)
        original = provider_class.close
        events: list[str] = []
        held: list[int | None] = []

        def close(provider: Any) -> None:
            events.append("close")
            original(provider)

        def during(ctx: Context, options: ProbeOptions) -> None:
            events.append("extract")
            held.append(self.leases(entry))

        monkeypatch.setattr(provider_class, "close", close)
        etl_probe.on_extract = during
        metrics = run({"credentials": ENTRY}, entry)
        assert metrics.status == "succeeded"
        assert events == ["extract", "close"], "the run must close the provider once, at its end"
        (during_run,) = held
        if during_run is not None:
            assert during_run > 0, "the run held no lease for the entry while it ran"
            assert self.leases(entry) == 0, "the run ended holding leases"
