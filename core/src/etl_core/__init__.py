"""etl-core: a plugin-architecture ETL SDK on Apache Spark.

The public surface for plugin authors: the component interfaces and types of
:mod:`etl_core.api`, the :data:`hookimpl` marker, and the options helpers. For notebooks and
scripts: :class:`Pipeline` and :class:`RunReport` (:mod:`etl_core.notebook`, imported on first
use).
"""

from typing import TYPE_CHECKING, Any

from etl_core.api import *  # noqa: F403 - the public contracts, re-exported
from etl_core.api import __all__ as _api_all
from etl_core.markers import hookimpl
from etl_core.options import duration, one_of, parse_duration, positive

if TYPE_CHECKING:
    from etl_core.notebook import Pipeline as Pipeline
    from etl_core.notebook import RunReport as RunReport

__all__ = [*_api_all, "duration", "hookimpl", "one_of", "parse_duration", "positive"]

#: imported on first use, so ``import etl_core`` stays cheap (the notebook API pulls in the
#: config loader and the runner)
_LAZY = {"Pipeline": "etl_core.notebook", "RunReport": "etl_core.notebook"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
