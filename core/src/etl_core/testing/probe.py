"""The probe extractor: a source that reads nothing and records the options the runner gave it,
with credentials filled in. Credential tests (the credential-provider conformance suite, a
provider's own tests) run a pipeline whose source is the probe and look at what it received:

.. code-block:: python

    def test_an_entry_fills_the_source(etl_probe, etl_run):
        metrics = etl_run(
            {
                "name": "probe",
                "credentials": {"wh": {"provider": "file", "path": "wh.yaml"}},
                "sources": {"a": {"type": etl_probe.name, "credentials": "wh"}},
                "sinks": {"o": {"type": "files", "input": "a", "path": "o"}},
            },
            host=etl_probe.host(),
        )
        (seen,) = etl_probe.seen
        assert seen.password.reveal() == "..."
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pytest

from etl_core.api import Context, Extractor
from etl_core.markers import hookimpl
from etl_core.plugins import PluginHost, get_plugin_host
from etl_core.secrets import Secret

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["PROBE_FIELDS", "Probe", "ProbeExtractor", "ProbeOptions", "etl_probe"]


@attrs.frozen
class ProbeOptions:
    """The probe's options: the credential fields most connectors take, each filled by a
    credentials entry (``credentials: NAME``) or an inline ``{secret: "provider:path"}``."""

    user: Secret | None = None
    password: Secret | None = None
    username: Secret | None = None
    token: Secret | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    value: Secret | None = None
    #: fail the extract with an error whose message holds every value the probe was given,
    #: the way a careless connector would: what the run reports must not show them
    fail: bool = False


#: the credential fields the probe takes (the fields of :class:`ProbeOptions` but ``fail``)
PROBE_FIELDS = tuple(f.name for f in attrs.fields(ProbeOptions) if f.name != "fail")


class ProbeExtractor(Extractor):
    """Hands its options to :attr:`recorder` and returns one row. The ``etl_probe`` fixture
    registers a subclass bound to a fresh :class:`Probe`, so tests never share what it saw."""

    name = "etl_probe"
    Options = ProbeOptions
    recorder: ClassVar[Probe | None] = None

    def extract(self, ctx: Context, options: ProbeOptions) -> DataFrame:
        recorder = self.recorder
        if recorder is None:
            raise RuntimeError("register the probe through the etl_probe fixture (Probe.host)")
        return recorder.extracted(ctx, options)


class Probe:
    """What the probe extractor (type :attr:`name`) received in one test.

    - :attr:`seen`: the options of each extract, in order (credentials as :class:`Secret`);
    - :meth:`host`: a plugin host with the probe registered, plus the plugins given;
    - :attr:`on_extract`: ``(ctx, options) -> DataFrame | None``, called while the run holds
      its credentials (e.g. to log in with them before the run releases them); a DataFrame
      it returns becomes the source's output instead of the probe's one row.
    """

    name = ProbeExtractor.name

    def __init__(self) -> None:
        self.seen: list[ProbeOptions] = []
        self.on_extract: Callable[[Context, ProbeOptions], DataFrame | None] | None = None
        self.extractor: type[ProbeExtractor] = type(
            "ProbeExtractor", (ProbeExtractor,), {"recorder": self}
        )

    def extracted(self, ctx: Context, options: ProbeOptions) -> DataFrame:
        self.seen.append(options)
        if options.fail:
            given = ", ".join(
                f"{field}={value.reveal()}"
                for field in PROBE_FIELDS
                if isinstance(value := getattr(options, field), Secret)
            )
            raise RuntimeError(f"probe failed as told; it was given {given}")
        if self.on_extract is not None:
            frame = self.on_extract(ctx, options)
            if frame is not None:
                return frame
        return ctx.spark.range(1)

    def plugin(self) -> object:
        """A plugin object registering this probe's extractor."""
        extractor = self.extractor

        class ProbePlugin:
            @hookimpl
            def etl_register_extractors(self, register: Callable[[type[Extractor]], None]) -> None:
                register(extractor)

        return ProbePlugin()

    def host(self, *plugins: ModuleType | object, autoload: bool = False) -> PluginHost:
        """Built-ins, ``plugins`` (modules or objects with hook implementations, e.g. a
        plugin's ``plugin`` module), the installed plugins when ``autoload``, and the probe."""
        extra: list[tuple[str, Any]] = [
            (getattr(plugin, "__name__", f"plugin-{index}"), plugin)
            for index, plugin in enumerate(plugins)
        ]
        return get_plugin_host(autoload=autoload, extra=[*extra, ("etl-probe", self.plugin())])


@pytest.fixture
def etl_probe() -> Iterator[Probe]:
    """A fresh :class:`Probe`: register it with ``etl_probe.host(...)``, read ``.seen``."""
    yield Probe()
