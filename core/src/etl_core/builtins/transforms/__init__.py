"""Built-in transforms: ``sql``, ``join``, ``filter``, ``select``, ``aggregate``, ``window``,
``deduplicate``, ``union``, ``python``. All lazy: no Spark action, no Python per row.

Importing this package does not import pyspark: the transforms import it where they build
their DataFrames.
"""

from __future__ import annotations

from etl_core.builtins.transforms.basic import (
    FilterTransform,
    JoinTransform,
    SelectTransform,
    SqlTransform,
    UnionTransform,
)
from etl_core.builtins.transforms.grouping import AggregateTransform, DeduplicateTransform
from etl_core.builtins.transforms.python import PythonTransform
from etl_core.builtins.transforms.window import WindowTransform

__all__ = [
    "AggregateTransform",
    "DeduplicateTransform",
    "FilterTransform",
    "JoinTransform",
    "PythonTransform",
    "SelectTransform",
    "SqlTransform",
    "UnionTransform",
    "WindowTransform",
]
