"""etl-core: a plugin-architecture ETL SDK on Apache Spark.

The public surface for plugin authors: the component interfaces and types of
:mod:`etl_core.api`, the :data:`hookimpl` marker, and the options helpers. For notebooks and
scripts: :class:`Pipeline` and :class:`RunReport` (:mod:`etl_core.notebook`).

Every name is imported on first use: a Spark worker that imports ``etl_core.datasources`` for a
plugin's data source loads neither the contracts (attrs) nor the plugin machinery (pluggy).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl_core.api import *  # noqa: F403
    from etl_core.markers import hookimpl as hookimpl
    from etl_core.notebook import Pipeline as Pipeline
    from etl_core.notebook import RunReport as RunReport
    from etl_core.options import duration as duration
    from etl_core.options import one_of as one_of
    from etl_core.options import parse_duration as parse_duration
    from etl_core.options import positive as positive

_ERRORS = (
    "ConfigError",
    "EtlError",
    "LoadError",
    "PermanentError",
    "PluginError",
    "PreflightFailed",
    "RunFailed",
    "RunLocked",
    "SecretError",
    "TransientError",
    "UnknownComponentError",
    "ValidationFailed",
)
#: where the names that are not :mod:`etl_core.api`'s own live (the errors, which
#: :mod:`etl_core.api` re-exports, from their module: a data source on a worker raises them)
_ELSEWHERE = {
    **dict.fromkeys(_ERRORS, "etl_core.errors"),
    "hookimpl": "etl_core.markers",
    "duration": "etl_core.options",
    "one_of": "etl_core.options",
    "parse_duration": "etl_core.options",
    "positive": "etl_core.options",
    "Pipeline": "etl_core.notebook",
    "RunReport": "etl_core.notebook",
}


def _public() -> list[str]:
    from etl_core.api import __all__ as api

    return [*api, *(n for n in _ELSEWHERE if n not in api and _ELSEWHERE[n] != "etl_core.notebook")]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "__all__":
        return _public()
    if name.startswith("__") or (name not in _ELSEWHERE and name not in _public()):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_ELSEWHERE.get(name, "etl_core.api")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public(), *_ELSEWHERE})
