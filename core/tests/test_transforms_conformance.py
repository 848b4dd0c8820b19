"""Every built-in transformer through etl_core's transformer suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_core.testing import TransformerConformance

pytestmark = pytest.mark.spark

ORDERS = (
    "order_id BIGINT, user_id BIGINT, amount DOUBLE, day DATE",
    [
        {"order_id": 1, "user_id": 1, "amount": 10.0, "day": "2024-01-01"},
        {"order_id": 2, "user_id": 1, "amount": 5.5, "day": "2024-01-02"},
        {"order_id": 3, "user_id": 2, "amount": 7.25, "day": "2024-01-02"},
        {"order_id": 3, "user_id": 2, "amount": 7.25, "day": "2024-01-02"},
    ],
)
USERS = (
    "user_id BIGINT, name STRING",
    [{"user_id": 1, "name": "ann"}, {"user_id": 2, "name": "bo"}],
)


class TestSql(TransformerConformance):
    component = "sql"
    block = {"type": "sql", "query": "SELECT user_id, sum(amount) AS total FROM orders GROUP BY 1"}
    inputs = {"orders": ORDERS}


class TestJoin(TransformerConformance):
    component = "join"
    block = {"type": "join", "on": ["user_id"], "how": "left"}
    inputs = {"orders": ORDERS, "users": USERS}


class TestFilter(TransformerConformance):
    component = "filter"
    block = {"type": "filter", "condition": "amount > 6"}
    inputs = {"orders": ORDERS}


class TestSelect(TransformerConformance):
    component = "select"
    block = {"type": "select", "columns": ["order_id", "amount"], "cast": {"amount": "string"}}
    inputs = {"orders": ORDERS}


class TestAggregate(TransformerConformance):
    component = "aggregate"
    block = {"type": "aggregate", "group_by": ["day"], "aggregations": {"total": "sum(amount)"}}
    inputs = {"orders": ORDERS}


class TestWindow(TransformerConformance):
    component = "window"
    block = {
        "type": "window",
        "partition_by": ["user_id"],
        "order_by": ["day"],
        "functions": {
            "nth": {"function": "row_number"},
            "running": {"function": "sum", "column": "amount"},
        },
    }
    inputs = {"orders": ORDERS}


class TestDeduplicate(TransformerConformance):
    component = "deduplicate"
    block = {"type": "deduplicate", "keys": ["order_id"], "order_by": ["day"]}
    inputs = {"orders": ORDERS}


class TestUnion(TransformerConformance):
    component = "union"
    block = {"type": "union", "allow_missing_columns": True}
    inputs = {"orders": ORDERS, "users": USERS}


class TestPython(TransformerConformance):
    component = "python"

    @pytest.fixture(autouse=True)
    def _functions_importable(self, monkeypatch):
        monkeypatch.syspath_prepend(str(Path(__file__).parent))  # etl_test_functions

    block = {
        "type": "python",
        "function": "etl_test_functions:big_orders",
        "options": {"min_amount": 6},
    }
    inputs = {"orders": ORDERS, "users": USERS}
