"""etl-core: a plugin-architecture ETL SDK on Apache Spark.

The public surface for plugin authors: the component interfaces and types of
:mod:`etl_core.api`, the :data:`hookimpl` marker, and the options helpers.
"""

from etl_core.api import *  # noqa: F403 - the public contracts, re-exported
from etl_core.api import __all__ as _api_all
from etl_core.options import duration, one_of, parse_duration, positive
from etl_core.plugins import hookimpl

__all__ = [*_api_all, "duration", "hookimpl", "one_of", "parse_duration", "positive"]
