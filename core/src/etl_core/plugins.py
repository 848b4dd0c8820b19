"""The plugin host: one typed owner of a fresh pluggy manager per call (no global manager)."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from etl_core import api, hookspecs
from etl_core.errors import PluginError, UnknownComponentError
from etl_core.markers import PROJECT

log = logging.getLogger("etl.plugins")

ENTRY_POINT_GROUP = PROJECT
BUILTIN = "etl-core"

#: kind → (registration hook, base class)
KINDS: dict[str, tuple[str, type[api.Component]]] = {
    "extractor": ("etl_register_extractors", api.Extractor),
    "transformer": ("etl_register_transformers", api.Transformer),
    "validator": ("etl_register_validators", api.Validator),
    "loader": ("etl_register_loaders", api.Loader),
    "credential_provider": ("etl_register_credential_providers", api.CredentialProvider),
    "metrics_reporter": ("etl_register_metrics_reporters", api.MetricsReporter),
    "state_store": ("etl_register_state_stores", api.StateStore),
}

#: first-party connectors, so an unknown type can name the package that adds it
KNOWN_PACKAGES = {
    name: f"etl-plugin-{name}"
    for name in ("postgres", "mysql", "kafka", "s3", "vault", "keyring", "prometheus", "cloudwatch")
}

#: what a user may write as a type when it is the `files` connector's format
FILE_FORMATS = {
    **{name: name for name in ("csv", "json", "jsonl", "parquet")},
    **{"ndjson": "jsonl", "json_lines": "jsonl"},
}


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str
    version: str
    components: tuple[tuple[str, str], ...]  # (kind, name)


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class PluginHost:
    """Owns the plugin manager; the rest of etl asks it for components and lifecycle calls."""

    def __init__(self, pm: pluggy.PluginManager, distributions: Mapping[str, tuple[str, str]]):
        self._pm = pm
        self._distributions = distributions
        self._components: dict[str, dict[str, type[Any]]] = {k: {} for k in KINDS}
        self._owners: dict[tuple[str, str], str] = {}
        for kind, (hook_name, base) in KINDS.items():
            for plugin, caller in self._callers(hook_name):
                try:
                    caller(register=self._registrar(kind, base, plugin))
                except Exception as exc:
                    if plugin == BUILTIN:
                        raise
                    log.warning("etl: plugin %r failed to register %ss: %s", plugin, kind, exc)

    def _callers(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """One hook caller per implementing plugin, in registration order (built-ins first),
        so one plugin's failure or ordering marks cannot affect another's."""
        owners = {impl.plugin_name for impl in getattr(self._pm.hook, hook_name).get_hookimpls()}
        plugins = self._pm.list_name_plugin()
        for name, _ in plugins:
            if name in owners:
                others = [plugin for other, plugin in plugins if other != name]
                yield name, self._pm.subset_hook_caller(hook_name, remove_plugins=others)

    def _registrar(self, kind: str, base: type, plugin: str) -> Callable[[type], None]:
        def register(cls: Any) -> None:
            name = getattr(cls, "name", None)
            if not (isinstance(cls, type) and issubclass(cls, base)) or not isinstance(name, str):
                raise PluginError(
                    f"plugin {plugin!r} registered {cls!r} as a {kind}: it must subclass "
                    f"etl_core.{base.__name__} and set a string `name`"
                )
            options = getattr(cls, "Options", None)
            if not (isinstance(options, type) and attrs.has(options)):
                raise PluginError(f"plugin {plugin!r}: {kind} {name!r} Options must be attrs")
            modes = list(getattr(cls, "modes", ()))
            if kind == "loader" and (not modes or any(m not in api.LOAD_MODES for m in modes)):
                raise PluginError(
                    f"plugin {plugin!r}: loader {name!r} declares modes {modes}; "
                    f"name at least one, each one of {', '.join(api.LOAD_MODES)}"
                )
            known = self._components[kind]
            if name in known:
                log.warning(
                    "etl: plugin %r registers %s %r, already registered by %r; keeping the first",
                    plugin,
                    kind,
                    name,
                    self._owners[(kind, name)],
                )
                return
            known[name] = cls
            self._owners[(kind, name)] = plugin

        return register

    def component(self, kind: str, name: str) -> type[Any]:
        known = self._components[kind]
        if name in known:
            return known[name]
        hint = None
        if name in KNOWN_PACKAGES:
            hint = f"install it with: pip install {KNOWN_PACKAGES[name]}"
        elif name.lower() in FILE_FORMATS and kind in ("extractor", "loader"):
            hint = f"files are `type: files` with `format: {FILE_FORMATS[name.lower()]}`"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            if close:
                hint = f"did you mean {close[0]!r}?"
        raise UnknownComponentError(kind.replace("_", " "), name, known, hint)

    def components(self, kind: str) -> Mapping[str, type[Any]]:
        return dict(self._components[kind])

    def plugins(self) -> list[PluginInfo]:
        infos = []
        for plugin_name, _ in self._pm.list_name_plugin():
            if plugin_name is None:
                continue
            dist, version = self._distributions.get(plugin_name, (plugin_name, "?"))
            components = tuple(
                (kind, name) for (kind, name), owner in self._owners.items() if owner == plugin_name
            )
            infos.append(PluginInfo(plugin_name, dist, version, components))
        return infos

    def owner(self, kind: str, name: str) -> str:
        return self._owners[(kind, name)]

    @contextmanager
    def observing(self, *observers: object) -> Iterator[None]:
        """Register ``observers`` (objects with lifecycle hook implementations, e.g. a run's
        metrics reporters and its tracer) for the duration of the block; the host guards
        their calls like any plugin's."""
        names = [f"etl-observer-{id(o)}" for o in observers]
        for name, observer in zip(names, observers, strict=True):
            self._pm.register(observer, name=name)
        try:
            yield
        finally:
            for name in names:
                self._pm.unregister(name=name)

    def run_started(self, *, pipeline: str, run_id: str, run_key: str) -> None:
        self._notify("etl_run_started", pipeline=pipeline, run_id=run_id, run_key=run_key)

    def stage_finished(self, *, pipeline: str, run_id: str, stage: api.StageMetrics) -> None:
        self._notify("etl_stage_finished", pipeline=pipeline, run_id=run_id, stage=stage)

    def run_finished(self, *, metrics: api.RunMetrics) -> None:
        self._notify("etl_run_finished", metrics=metrics)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        # Observers must never break a run, nor keep the next observer from being called.
        for plugin, caller in self._callers(hook_name):
            try:
                caller(**kwargs)
            except Exception as exc:  # noqa: BLE001 - an observer's bug is logged, not raised
                log.warning("etl: plugin %r failed in %s: %s", plugin, hook_name, exc)


def get_plugin_host(
    *,
    autoload: bool = True,
    only: Iterable[str] | None = None,
    blocked: Iterable[str] = (),
    strict: bool = False,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
) -> PluginHost:
    """Build a fresh host: specs → built-ins → entry points (one at a time) → check.

    ``ETL_LOAD_PLUGINS`` (comma-separated entry-point names) loads only those;
    ``ETL_DISABLED_PLUGINS`` blocks the named ones. A plugin that fails to import or whose
    hook implementations don't match the specs is skipped with one warning, or raises
    :class:`PluginError` when ``strict``. ``extra`` registers ``(name, plugin)`` pairs
    directly (tests, notebooks).
    """
    from etl_core import builtins

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtins, name=BUILTIN)
    distributions = {BUILTIN: (BUILTIN, _version(BUILTIN))}
    try:
        for name, plugin in extra:
            pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} does not match the hook specs: {exc}") from exc
    if autoload:
        allowed = _env_list("ETL_LOAD_PLUGINS") if only is None else set(only)
        denied = set(blocked) | (_env_list("ETL_DISABLED_PLUGINS") or set())
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (allowed is not None and ep.name not in allowed) or ep.name in denied:
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
                pm.check_pending()
            except Exception as exc:
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                message = f"plugin {ep.name!r} ({ep.value}) could not be loaded: {exc}"
                if strict:
                    raise PluginError(message) from exc
                log.warning("etl: skipping %s", message)
                continue
            dist = ep.dist
            distributions[ep.name] = (dist.name, dist.version) if dist else (ep.name, "?")
    return PluginHost(pm, distributions)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "dev"
