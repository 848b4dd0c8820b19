"""Functions for the ``python`` transform's tests (imported by ``module:function`` reference)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def big_orders(inputs: Mapping[str, DataFrame], options: dict[str, Any]) -> DataFrame:
    """Orders of at least ``min_amount``, with the user's name and the input names seen."""
    orders, users = inputs["orders"], inputs["users"]
    return (
        orders.filter(F.col("amount") >= options["min_amount"])
        .join(users, on="user_id")
        .withColumn("seen_inputs", F.lit(",".join(inputs)))
    )


def not_a_frame(inputs: Mapping[str, DataFrame], options: dict[str, Any]) -> list[str]:
    return list(inputs)


def fails(inputs: Mapping[str, DataFrame], options: dict[str, Any]) -> DataFrame:
    raise ValueError("the threshold is too low")


NOT_CALLABLE = 42
