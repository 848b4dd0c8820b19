"""The pluggy markers of the ``etl`` plugin project.

Plugins mark their hook implementations with :data:`hookimpl` (also exported as
``etl_core.hookimpl``); :data:`hookspec` marks the specifications in :mod:`etl_core.hookspecs`
and is not part of the plugin surface.
"""

import pluggy

__all__ = ["PROJECT", "hookimpl"]

PROJECT = "etl"
hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)
