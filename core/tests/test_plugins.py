"""The plugin host: built-ins, unknown names, clashes, bad plugins, observers, allow/deny lists.

Every test builds its own host; plugins are registered directly with ``extra=`` or offered as
fake entry points, so nothing here depends on what is installed.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import attrs
import pytest

from etl_core import (
    CAPABILITIES,
    CredentialProvider,
    Extractor,
    Loader,
    MetricsReporter,
    PluginError,
    RunMetrics,
    StageMetrics,
    StateStore,
    Transformer,
    UnknownComponentError,
    Validator,
    hookimpl,
)
from etl_core.builtins.files import FilesExtractor
from etl_core.plugins import BUILTIN, PluginHost, get_plugin_host

BUILTIN_TRANSFORMERS = {
    "sql",
    "join",
    "filter",
    "select",
    "aggregate",
    "window",
    "deduplicate",
    "union",
    "python",
}
BUILTIN_CAPABILITIES = {
    ("extractor", "files"): {"batch", "partitioned_read", "incremental", "streaming"},
    **{
        ("transformer", name): {"batch", "stateful"}
        for name in ("aggregate", "deduplicate", "window")
    },
    **{
        ("transformer", name): {"batch", "streaming"}
        for name in BUILTIN_TRANSFORMERS - {"aggregate", "deduplicate", "window"}
    },
    **{
        ("validator", name): set()
        for name in (
            "not_null",
            "unique",
            "range",
            "regex",
            "accepted_values",
            "sql",
            "row_count",
            "freshness",
        )
    },
    ("loader", "files"): {"batch", "streaming"},
    ("credential_provider", "env"): set(),
    ("credential_provider", "file"): set(),
    ("metrics_reporter", "log"): set(),
    ("state_store", "file"): set(),
}


@pytest.fixture(autouse=True)
def _no_plugin_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("ETL_DISABLED_PLUGINS", raising=False)


@pytest.fixture
def etl_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """``caplog`` seeing the host's warnings even after the CLI stopped ``etl`` propagating."""
    monkeypatch.setattr(logging.getLogger("etl"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="etl")
    return caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def plugin_module(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module whose attributes are the given functions, marked as hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registering(*classes: Any) -> Callable[[Callable[[Any], None]], None]:
    def register_all(register: Callable[[Any], None]) -> None:
        for cls in classes:
            register(cls)

    return register_all


@attrs.frozen
class GreetingOptions:
    column: str = "greeting"


class Greeting(Transformer):
    name = "greeting"
    Options = GreetingOptions

    def transform(self, ctx: Any, inputs: Any, options: Any) -> Any:
        raise NotImplementedError


class OtherFiles(Extractor):
    name = "files"

    def extract(self, ctx: Any, options: Any) -> Any:
        raise NotImplementedError


# Built-ins


def test_builtins_are_listed_with_their_kinds_and_capabilities(etl_host: PluginHost) -> None:
    [builtin] = etl_host.plugins()

    assert (builtin.name, builtin.distribution) == (BUILTIN, "etl-core")
    assert builtin.version == metadata.version("etl-core")
    assert set(builtin.components) == set(BUILTIN_CAPABILITIES)
    for (kind, name), capabilities in BUILTIN_CAPABILITIES.items():
        component = etl_host.component(kind, name)
        assert set(component.capabilities) == capabilities, (kind, name)
        assert component.capabilities <= CAPABILITIES
        assert attrs.has(component.Options)
        assert etl_host.owner(kind, name) == BUILTIN


def test_each_host_is_fresh() -> None:
    greetings = plugin_module("greetings", etl_register_transformers=registering(Greeting))
    with_greeting = get_plugin_host(autoload=False, extra=[("greetings", greetings)])
    without = get_plugin_host(autoload=False)

    assert with_greeting.component("transformer", "greeting") is Greeting
    assert "greeting" not in without.components("transformer")
    assert [info.name for info in without.plugins()] == [BUILTIN]


@pytest.mark.parametrize(
    ("hook_name", "kind", "base"),
    [
        ("etl_register_extractors", "extractor", Extractor),
        ("etl_register_transformers", "transformer", Transformer),
        ("etl_register_validators", "validator", Validator),
        ("etl_register_loaders", "loader", Loader),
        ("etl_register_credential_providers", "credential_provider", CredentialProvider),
        ("etl_register_metrics_reporters", "metrics_reporter", MetricsReporter),
        ("etl_register_state_stores", "state_store", StateStore),
    ],
)
def test_each_registration_hook_adds_its_kind(hook_name: str, kind: str, base: type) -> None:
    demo = type("Demo", (base,), {"name": "demo"})
    plugin = plugin_module("demo", **{hook_name: registering(demo)})

    host = get_plugin_host(autoload=False, extra=[("demo-plugin", plugin)])

    assert host.component(kind, "demo") is demo
    assert host.owner(kind, "demo") == "demo-plugin"
    [info] = [info for info in host.plugins() if info.name == "demo-plugin"]
    assert info.components == ((kind, "demo"),)


# Unknown names


def test_unknown_first_party_connector_names_its_package(etl_host: PluginHost) -> None:
    with pytest.raises(UnknownComponentError) as raised:
        etl_host.component("extractor", "postgres")

    message = str(raised.value)
    assert "unknown extractor type 'postgres'" in message
    assert "(known: files)" in message
    assert "pip install etl-plugin-postgres" in message
    assert raised.value.known == ["files"]
    assert isinstance(raised.value, KeyError)


def test_unknown_name_suggests_the_closest_known_one(etl_host: PluginHost) -> None:
    with pytest.raises(UnknownComponentError) as raised:
        etl_host.component("transformer", "selct")

    message = str(raised.value)
    assert f"(known: {', '.join(sorted(BUILTIN_TRANSFORMERS))})" in message
    assert "did you mean 'select'?" in message


def test_unknown_name_without_a_close_match_lists_the_known_ones(etl_host: PluginHost) -> None:
    with pytest.raises(UnknownComponentError) as raised:
        etl_host.component("credential_provider", "zzzz")

    assert str(raised.value) == "unknown credential provider type 'zzzz' (known: env, file)"
    assert raised.value.hint is None


# Name clashes and invalid registrations


def test_name_clash_keeps_the_builtin_and_warns_naming_both(etl_log) -> None:
    copycat = plugin_module("copycat", etl_register_extractors=registering(OtherFiles))

    host = get_plugin_host(autoload=False, extra=[("copycat", copycat)])

    assert host.component("extractor", "files") is FilesExtractor
    assert host.owner("extractor", "files") == BUILTIN
    [warning] = warnings_of(etl_log)
    assert "'copycat'" in warning
    assert "'etl-core'" in warning
    assert "extractor 'files'" in warning
    [info] = [info for info in host.plugins() if info.name == "copycat"]
    assert info.components == ()


def test_name_clash_between_two_plugins_keeps_the_first_registered(etl_log) -> None:
    class OtherGreeting(Greeting):
        pass

    first = plugin_module("first", etl_register_transformers=registering(Greeting))
    second = plugin_module("second", etl_register_transformers=registering(OtherGreeting))

    host = get_plugin_host(autoload=False, extra=[("first", first), ("second", second)])

    assert host.component("transformer", "greeting") is Greeting
    [warning] = warnings_of(etl_log)
    assert "'second'" in warning
    assert "'first'" in warning


def test_trylast_plugin_cannot_take_a_builtin_name(etl_log) -> None:
    class Late:
        @hookimpl(trylast=True)
        def etl_register_extractors(self, register: Callable[[type], None]) -> None:
            register(OtherFiles)

    host = get_plugin_host(autoload=False, extra=[("late", Late())])

    assert host.component("extractor", "files") is FilesExtractor


class NotAComponent:
    name = "bogus"


class Nameless(Transformer):
    def transform(self, ctx: Any, inputs: Any, options: Any) -> Any:
        raise NotImplementedError


class PlainOptions(Transformer):
    name = "plain"

    class Options:
        column = "x"

    def transform(self, ctx: Any, inputs: Any, options: Any) -> Any:
        raise NotImplementedError


class WrongKind(Loader):
    name = "wrong"


def test_a_loader_declaring_a_mode_the_core_does_not_know_is_skipped(etl_log) -> None:
    """The core owns the load modes: a loader may only pick among them."""

    @attrs.frozen
    class Nothing:
        pass

    class Merging(Loader):
        name = "merging"
        Options = Nothing
        modes = ("append", "merge")

    sloppy = plugin_module("sloppy", etl_register_loaders=registering(Merging))
    host = get_plugin_host(autoload=False, extra=[("sloppy", sloppy)])
    [warning] = warnings_of(etl_log)
    assert "loader 'merging' declares modes ['append', 'merge']" in warning
    assert "merging" not in host.components("loader")


@pytest.mark.parametrize(
    ("invalid", "problem"),
    [
        (NotAComponent, "must subclass etl_core.Transformer"),
        (Greeting(), "must subclass etl_core.Transformer"),
        (WrongKind, "must subclass etl_core.Transformer"),
        (Nameless, "set a string `name`"),
        (PlainOptions, "Options must be attrs"),
    ],
    ids=["not-a-component", "an-instance", "another-kind", "no-name", "options-not-attrs"],
)
def test_invalid_registration_is_skipped_with_a_warning(
    etl_log, invalid: Any, problem: str
) -> None:
    sloppy = plugin_module(
        "sloppy",
        etl_register_transformers=registering(invalid),
        etl_register_extractors=registering(type("Good", (Extractor,), {"name": "good"})),
    )

    host = get_plugin_host(autoload=False, extra=[("sloppy", sloppy)])

    [warning] = warnings_of(etl_log)
    assert "'sloppy'" in warning
    assert problem in warning
    assert host.components("transformer").keys() == BUILTIN_TRANSFORMERS
    assert host.component("extractor", "good").name == "good"
    assert host.component("extractor", "files") is FilesExtractor


def test_registration_hook_that_raises_is_skipped_with_a_warning(etl_log) -> None:
    def missing_driver(register: Callable[[type], None]) -> None:
        raise ImportError("no module named 'psycopg'")

    plugin = plugin_module("needs-driver", etl_register_extractors=missing_driver)

    host = get_plugin_host(autoload=False, extra=[("needs-driver", plugin)])

    [warning] = warnings_of(etl_log)
    assert "'needs-driver'" in warning
    assert "no module named 'psycopg'" in warning
    assert host.components("extractor").keys() == {"files"}


# Lifecycle hooks


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def etl_run_started(self, pipeline: str, run_id: str, run_key: str) -> None:
        self.calls.append(("started", {"pipeline": pipeline, "run_id": run_id, "run_key": run_key}))

    @hookimpl
    def etl_stage_finished(self, pipeline: str, run_id: str, stage: StageMetrics) -> None:
        self.calls.append(("stage", {"pipeline": pipeline, "run_id": run_id, "stage": stage}))

    @hookimpl
    def etl_run_finished(self, metrics: RunMetrics) -> None:
        self.calls.append(("finished", {"metrics": metrics}))


class Faulty:
    @hookimpl
    def etl_run_started(self, pipeline: str, run_id: str, run_key: str) -> None:
        raise RuntimeError("observer bug at start")

    @hookimpl
    def etl_stage_finished(self, pipeline: str, run_id: str, stage: StageMetrics) -> None:
        raise RuntimeError("observer bug at stage")

    @hookimpl
    def etl_run_finished(self, metrics: RunMetrics) -> None:
        raise RuntimeError("observer bug at finish")


STAGE = StageMetrics(dataset="orders", stage="extract", component="files", rows_out=3)
METRICS = RunMetrics(pipeline="daily", run_id="run-1", run_key="0123456789ab", status="success")


def notify_all(host: PluginHost) -> None:
    host.run_started(pipeline="daily", run_id="run-1", run_key="0123456789ab")
    host.stage_finished(pipeline="daily", run_id="run-1", stage=STAGE)
    host.run_finished(metrics=METRICS)


def test_observers_receive_every_lifecycle_call() -> None:
    recorder = Recorder()
    host = get_plugin_host(autoload=False, extra=[("recorder", recorder)])

    notify_all(host)

    assert recorder.calls == [
        ("started", {"pipeline": "daily", "run_id": "run-1", "run_key": "0123456789ab"}),
        ("stage", {"pipeline": "daily", "run_id": "run-1", "stage": STAGE}),
        ("finished", {"metrics": METRICS}),
    ]


def test_an_observer_that_raises_never_breaks_the_run(etl_log) -> None:
    recorder = Recorder()
    host = get_plugin_host(autoload=False, extra=[("faulty", Faulty()), ("recorder", recorder)])

    notify_all(host)

    assert [kind for kind, _ in recorder.calls] == ["started", "stage", "finished"]
    assert warnings_of(etl_log) == [
        "etl: plugin 'faulty' failed in etl_run_started: observer bug at start",
        "etl: plugin 'faulty' failed in etl_stage_finished: observer bug at stage",
        "etl: plugin 'faulty' failed in etl_run_finished: observer bug at finish",
    ]


def test_an_observer_may_accept_fewer_arguments_than_the_spec() -> None:
    seen: list[Any] = []

    class Terse:
        @hookimpl
        def etl_run_started(self, run_id: str) -> None:
            seen.append(run_id)

        @hookimpl
        def etl_stage_finished(self, stage: StageMetrics) -> None:
            seen.append(stage)

        @hookimpl
        def etl_run_finished(self) -> None:
            seen.append("finished")

    host = get_plugin_host(autoload=False, extra=[("terse", Terse())])

    notify_all(host)

    assert seen == ["run-1", STAGE, "finished"]


def test_a_wrapper_observer_is_called() -> None:
    seen: list[str] = []

    class Timing:
        @hookimpl(wrapper=True)
        def etl_run_started(self, pipeline: str) -> Iterator[None]:
            seen.append(pipeline)
            return (yield)

    host = get_plugin_host(autoload=False, extra=[("timing", Timing())])

    host.run_started(pipeline="daily", run_id="run-1", run_key="0123456789ab")

    assert seen == ["daily"]


# Entry points: ETL_LOAD_PLUGINS, ETL_DISABLED_PLUGINS, only=, blocked=, broken plugins


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offer ``alpha``, ``beta``, ``broken`` and ``misspelled`` as installed entry points."""

    def transformer_plugin(name: str) -> types.ModuleType:
        cls = type(name.title(), (Greeting,), {"name": name})
        return plugin_module(f"fake_etl_{name}", etl_register_transformers=registering(cls))

    misspelled = plugin_module(
        "fake_etl_misspelled", etl_register_extractorz=registering(type("Typo", (Extractor,), {}))
    )
    for module in (transformer_plugin("alpha"), transformer_plugin("beta"), misspelled):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    installed = [
        metadata.EntryPoint(name=name, value=f"fake_etl_{name}", group="etl")
        for name in ("alpha", "beta", "broken", "misspelled")
    ]

    def fake_entry_points(**selection: str) -> list[metadata.EntryPoint]:
        assert selection == {"group": "etl"}
        return installed

    # "broken" names a module that does not exist: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "fake_etl_broken", None)
    monkeypatch.setattr("etl_core.plugins.metadata.entry_points", fake_entry_points)


def loaded(host: PluginHost) -> set[str]:
    return {info.name for info in host.plugins()} - {BUILTIN}


@pytest.mark.usefixtures("entry_points")
def test_autoload_loads_every_entry_point_and_skips_bad_ones_with_one_warning_each(
    etl_log,
) -> None:
    host = get_plugin_host()

    assert loaded(host) == {"alpha", "beta"}
    assert host.components("transformer").keys() >= {"alpha", "beta", "sql"}
    assert host.components("extractor").keys() == {"files"}
    broken, misspelled = warnings_of(etl_log)
    assert broken.startswith("etl: skipping plugin 'broken' (fake_etl_broken) could not be loaded")
    assert misspelled.startswith("etl: skipping plugin 'misspelled' (fake_etl_misspelled)")
    assert "etl_register_extractorz" in misspelled


@pytest.mark.usefixtures("entry_points")
@pytest.mark.parametrize("name", ["broken", "misspelled"])
def test_strict_raises_naming_the_plugin_that_cannot_be_loaded(name: str) -> None:
    with pytest.raises(PluginError, match=f"plugin '{name}' \\(fake_etl_{name}\\) could not"):
        get_plugin_host(strict=True, only=[name])


@pytest.mark.usefixtures("entry_points")
@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        ({"ETL_LOAD_PLUGINS": "alpha"}, {}, {"alpha"}),
        ({"ETL_LOAD_PLUGINS": " alpha , beta ,"}, {}, {"alpha", "beta"}),
        ({"ETL_LOAD_PLUGINS": ""}, {}, set()),
        ({"ETL_DISABLED_PLUGINS": "alpha,broken,misspelled"}, {}, {"beta"}),
        ({"ETL_LOAD_PLUGINS": "alpha,beta", "ETL_DISABLED_PLUGINS": "beta"}, {}, {"alpha"}),
        ({"ETL_LOAD_PLUGINS": "alpha"}, {"only": ["beta"]}, {"beta"}),
        ({}, {"only": []}, set()),
        ({}, {"only": ["alpha", "beta"], "blocked": ["alpha"]}, {"beta"}),
        (
            {"ETL_DISABLED_PLUGINS": "beta"},
            {"only": ["alpha", "beta"], "blocked": ["alpha"]},
            set(),
        ),
        ({"ETL_LOAD_PLUGINS": "alpha,beta"}, {"autoload": False}, set()),
    ],
    ids=[
        "allow-list",
        "allow-list-spaces",
        "allow-nothing",
        "deny-list",
        "deny-beats-allow",
        "only-beats-allow-env",
        "only-nothing",
        "blocked",
        "blocked-adds-to-deny-env",
        "autoload-off",
    ],
)
def test_allow_and_deny_lists(
    etl_log, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: Any, expected: set[str]
) -> None:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)

    host = get_plugin_host(**kwargs)

    assert loaded(host) == expected
    assert host.components("transformer").keys() == {*BUILTIN_TRANSFORMERS, *expected}
    assert warnings_of(etl_log) == []


@pytest.mark.usefixtures("entry_points")
def test_extra_plugin_shadows_an_entry_point_of_the_same_name() -> None:
    own_alpha = plugin_module("own_alpha", etl_register_transformers=registering(Greeting))

    host = get_plugin_host(only=["alpha"], extra=[("alpha", own_alpha)])

    assert host.owner("transformer", "greeting") == "alpha"
    assert "alpha" not in host.components("transformer")
