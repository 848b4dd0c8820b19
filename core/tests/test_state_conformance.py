"""The built-in ``file`` state store through etl_core's state-store suite."""

from __future__ import annotations

import pytest

from etl_core.testing import StateStoreConformance

pytestmark = pytest.mark.spark


class TestFileStateStoreConformance(StateStoreConformance):
    component = "file"

    def state_block(self, tmp_path):
        return {"type": "file"}  # .etl/state/ beside the pipeline: the test's own tmp_path
