"""Conformance suites for extractors and loaders (v1): inherit them, provide a few hooks, get
the tests. Nothing here knows a particular system; a connector's test module subclasses:

.. code-block:: python

    from etl_core.testing import ExtractorConformance, LoaderConformance, TypeCase

    class TestMyDbLoader(LoaderConformance):
        component = "mydb"                       # the loader's type name
        type_cases = [TypeCase("qty", "INTEGER", (1, None, -5), "int32")]

        @pytest.fixture
        def target(self):                        # a fresh, unique target name per test
            ...
        def create_target(self, target, columns, rows=(), key=()): ...
        def read_target(self, target): ...       # list of dicts, the target's native values
        def sink_block(self, target, **options): ...   # the sink block, without `input`
        def failing_sink_block(self, target): ...      # a sink block that fails at run time

Hooks (methods or fixtures of the subclass):

- fixture ``target``: a fresh target name (a table, a topic, a prefix) unique to the test;
  the subclass drops what it created when the test ends.
- ``create_target(target, columns, rows=(), key=())``: create the target with ``columns``
  (a sequence of ``(name, native_type)``), insert ``rows`` (mappings of native values), and
  make ``key`` its primary/unique key when given.
- ``read_target(target) -> list[dict]``: every row of the target with native values (what
  ``create_target`` accepts), in any order.
- ``sink_block(target, **options)`` / ``source_block(target, **options)``: the pipeline block
  (``type`` and options) that writes / reads ``target``. Extra ``options`` (``mode``,
  ``key``) are the component's own and merged in.
- ``partition_options(column, partitions)``: extra source options for a partitioned read.
- ``reports_merged = True``: the loader reports an upsert's inserted and updated rows
  (``ctx.report_merged``); the upsert case then checks the numbers, else that none came.
- ``partitioned_sink_options(column)``: sink options partitioning the target by ``column``
  (loaders declaring the mode ``overwrite_partitions``).
- ``incremental_options()`` and ``add_rows(target, rows)``: the source's ``incremental:`` block
  and a way to add rows as new data arrives (extractors declaring ``incremental``; a
  ``streaming`` one needs ``add_rows`` and may give ``stream_options()``, extra source options
  for reading the rows as a stream).
- ``failing_sink_block(target)`` / ``failing_source_block(target)``: a block that fails at run
  time (e.g. a missing table); the tests check the error and that no secret leaks.
- ``credential_values()``: the credential fields by value (default: a marker ``password``);
  the suite serves them from an ``env`` credentials entry named ``conformance``, added as
  ``credentials: conformance`` to every block the hooks build.
- ``refused_credentials()``: ``(values, options)``: credential values the test endpoint
  refuses and the block options pointing at an endpoint that checks them, for the
  bad-credentials case (default ``None``: skipped, saying the component checks none).
- ``staging_leftovers(target) -> list[str]``: the staging objects of ``target`` that exist now
  (default: none known). The killed-run case needs it: it kills ``etl run`` once staging shows
  here, and checks the next run removed it.
- ``type_cases``: a list of :class:`TypeCase`, one per row of the connector's type mapping.

Cases that need a capability or a load mode are marked ``applies(capability=...)`` /
``applies(mode=...)`` (:mod:`etl_core.testing.selection`) and run only for components that
declare it; the others are deselected and listed in the test summary. A loader is also checked
to refuse the modes it does not declare.

Both suites run pipelines through :func:`etl_core.testing.run_pipeline` on the shared
``etl_spark`` session, with parquet files (pyarrow) on the other end, and the plugin host
from the ``conformance_host`` fixture (entry points loaded; override it to narrow).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from etl_core.api import LOAD_MODES, RunMetrics
from etl_core.errors import (
    ConfigError,
    EtlError,
    PermanentError,
    PreflightFailed,
    TransientError,
)
from etl_core.plugins import PluginHost
from etl_core.testing.harness import (
    BASIC,
    ConformanceBase,
    TypeCase,
    kill_while_staging,
    norm,
    rows_of,
)
from etl_core.testing.selection import applies

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ExtractorConformance", "LoaderConformance", "TypeCase"]


class LoaderConformance(ConformanceBase):
    """Tests every loader must pass. Subclass, set ``component`` and provide the hooks."""

    component: ClassVar[str]
    component_kind: ClassVar[str] = "loader"

    @pytest.fixture
    def modes(self, conformance_host: PluginHost) -> tuple[str, ...]:
        """The load modes the loader declares (``Loader.modes``)."""
        return tuple(conformance_host.component("loader", self.component).modes)

    def sink_block(self, target: str, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def failing_sink_block(self, target: str) -> dict[str, Any]:
        raise NotImplementedError

    #: the loader reports an upsert's inserted and updated rows (``Context.report_merged``)
    reports_merged: ClassVar[bool] = False

    def partitioned_sink_options(self, column: str) -> dict[str, Any]:
        """Sink options that partition the target by ``column`` (loaders declaring
        ``overwrite_partitions``)."""
        raise NotImplementedError("declares overwrite_partitions: provide partitioned_sink_options")

    def load(
        self,
        run: Any,
        tmp_path: Path,
        target: str,
        rows: Sequence[Mapping[str, Any]],
        schema: pa.Schema | None = None,
        run_id: str | None = None,
        transforms: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> RunMetrics:
        folder = tmp_path / f"input-{uuid.uuid4().hex[:8]}"
        self.write_parquet(folder, rows, schema or self.basic_schema())
        sink = {**self._with_credentials(self.sink_block(target, **options))}
        sink["input"] = "last" if transforms else "rows"
        return run(
            {"rows": {"type": "files", "format": "parquet", "path": str(folder)}},
            {"out": sink},
            transforms=transforms,
            run_id=run_id,
        )

    def assert_target(self, target: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns = [name for name, _ in BASIC]
        assert rows_of(self.read_target(target), columns) == rows_of(rows, columns)

    def test_round_trip(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows = self.basic_rows(1000)
        metrics = self.load(run, tmp_path, target, rows, mode="append")
        assert metrics.status == "succeeded"
        self.assert_target(target, rows)
        assert self.staging_leftovers(target) == []

    def test_empty_input(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        metrics = self.load(run, tmp_path, target, [], mode="append")
        staged = metrics.stage("out", "load")
        assert staged is not None and staged.rows_out == 0
        assert self.read_target(target) == []

    def test_nulls(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows: list[dict[str, Any]] = [
            {"id": 1, "name": None, "amount": None},
            {"id": 2, "name": "", "amount": 0.0},
        ]
        self.load(run, tmp_path, target, rows, mode="append")
        self.assert_target(target, rows)

    def test_every_mapped_type(self, run, tmp_path, target):
        import pyarrow as pa

        cases = [case for case in self.type_cases if case.loadable]
        if not cases:
            pytest.skip("no loadable type_cases declared")
        count = max(len(case.values) for case in cases)
        columns = [("id", self.basic_types["id"]), *((c.column, c.native_type) for c in cases)]
        self.create_target(target, columns)
        schema = pa.schema([("id", pa.int64()), *((c.column, c.arrow()) for c in cases)])
        rows = [
            {"id": i, **{c.column: c.values[i] if i < len(c.values) else None for c in cases}}
            for i in range(count)
        ]
        self.load(run, tmp_path, target, rows, schema=schema, mode="append")
        back = {row["id"]: row for row in self.read_target(target)}
        assert sorted(back) == list(range(count))
        for case in cases:
            natives = case.native_values
            got = [norm(back[i][case.column]) for i in range(len(natives))]
            want = [norm(v) for v in natives]
            assert got == want, f"type case {case.column} ({case.native_type})"

    @applies(mode="overwrite")
    def test_overwrite_replaces_rows(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns(), self.basic_rows(5))
        rows = self.basic_rows(3, start=100)
        self.load(run, tmp_path, target, rows, mode="overwrite")
        self.assert_target(target, rows)

    @applies(mode="error")
    def test_error_mode_refuses_a_target_with_rows(self, run, tmp_path, target):
        old = self.basic_rows(2)
        self.create_target(target, self.basic_columns(), old)
        with pytest.raises(EtlError) as failure:
            self.load(run, tmp_path, target, self.basic_rows(3, start=10), mode="error")
        assert "out" in str(failure.value)
        self.assert_target(target, old)
        assert self.staging_leftovers(target) == []

    @applies(mode="upsert")
    def test_upsert_updates_and_inserts(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns(), self.basic_rows(10), key=["id"])
        changed = [{**row, "name": "changed"} for row in self.basic_rows(10)[5:]]
        new = self.basic_rows(5, start=11)
        metrics = self.load(run, tmp_path, target, changed + new, mode="upsert", key=["id"])
        self.assert_target(target, self.basic_rows(10)[:5] + changed + new)
        (load,) = [s for s in metrics.stages if s.dataset == "out" and s.stage == "load"]
        counts = (load.inserted, load.updated)
        assert counts == ((5, 5) if self.reports_merged else (None, None)), counts

    @applies(mode="overwrite_partitions")
    def test_overwrite_partitions_replaces_only_the_partitions_written(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        by_name = self.partitioned_sink_options("name")
        first = [{"id": i, "name": "ab"[i % 2], "amount": i * 1.5} for i in range(1, 11)]
        self.load(run, tmp_path, target, first, mode="append", **by_name)
        new_b = [{"id": 100 + i, "name": "b", "amount": 0.5} for i in range(3)]
        self.load(run, tmp_path, target, new_b, mode="overwrite_partitions", **by_name)
        self.assert_target(target, [row for row in first if row["name"] == "a"] + new_b)
        assert self.staging_leftovers(target) == []

    def test_undeclared_and_unknown_modes_are_refused_and_change_nothing(
        self, run, tmp_path, target, modes
    ):
        old = self.basic_rows(2)
        self.create_target(target, self.basic_columns(), old, key=["id"])
        for mode in [*(m for m in LOAD_MODES if m not in modes), "replace"]:
            key: dict[str, Any] = {"key": ["id"]} if mode == "upsert" else {}
            with pytest.raises(ConfigError) as failure:
                self.load(run, tmp_path, target, self.basic_rows(3, start=10), mode=mode, **key)
            assert "sinks.out.mode" in str(failure.value) and repr(mode) in str(failure.value)
        self.assert_target(target, old)

    def test_partition_boundaries_lose_and_duplicate_nothing(self, run, tmp_path, target):
        """Many small input partitions, ids spanning negative to large values."""
        self.create_target(target, self.basic_columns())
        ids = [-(2**40), -1, 0, 1, 2, 3, 2**31 - 1, 2**31, 2**40]
        rows = [{"id": i, "name": str(i), "amount": 1.0} for i in ids]
        self.load(run, tmp_path, target, rows, mode="append")
        self.assert_target(target, rows)

    def test_failure_mid_load_leaves_target_unchanged(self, run, tmp_path, target):
        old = self.basic_rows(3, start=5000)
        self.create_target(target, self.basic_columns(), old)
        transforms = {
            "last": {
                "type": "sql",
                "inputs": ["rows"],
                "query": "SELECT id, CASE WHEN id = 2999 THEN raise_error('boom mid-load') "
                "ELSE name END AS name, amount FROM rows",
            }
        }
        with pytest.raises(EtlError):
            self.load(
                run, tmp_path, target, self.basic_rows(3000), transforms=transforms, mode="append"
            )
        self.assert_target(target, old)
        assert self.staging_leftovers(target) == []

    @pytest.mark.slow
    def test_sigkill_during_staging_leaves_target_and_next_run_cleans_up(
        self, run, tmp_path, target, conformance_env
    ):
        """A real ``etl run`` process killed with SIGKILL while its tasks write the staging:
        the target is unchanged, and the next run of the pipeline removes the staging."""
        old = self.basic_rows(3, start=7000)
        self.create_target(target, self.basic_columns(), old)
        folder = self.write_parquet(tmp_path / "in", self.basic_rows(5), self.basic_schema())
        sink = {**self._with_credentials(self.sink_block(target, mode="append")), "input": "many"}
        slow = {
            "name": "conformance",
            "credentials": conformance_env,
            "sources": {"rows": {"type": "files", "format": "parquet", "path": str(folder)}},
            "transforms": {
                "many": {
                    "type": "sql",
                    "inputs": ["rows"],
                    "query": "SELECT r.* FROM rows r CROSS JOIN range(50000000)",
                }
            },
            "sinks": {"out": sink},
        }
        (tmp_path / "slow.json").write_text(json.dumps(slow))
        kill_while_staging(
            tmp_path / "slow.json",
            sink="out",
            started=lambda: bool(self.staging_leftovers(target)),
        )
        self.assert_target(target, old)
        assert self.staging_leftovers(target), "the killed run left no staging to clean"
        new = self.basic_rows(4, start=8000)
        self.load(run, tmp_path, target, new, mode="append")
        self.assert_target(target, old + new)
        assert self.staging_leftovers(target) == []

    def test_rerun_with_the_same_run_id_is_idempotent(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        rows = self.basic_rows(20)
        first = self.load(run, tmp_path, target, rows, run_id="conformance-run-1", mode="append")
        again = self.load(run, tmp_path, target, rows, run_id="conformance-run-1", mode="append")
        assert first.status == again.status == "succeeded"
        self.assert_target(target, rows)
        assert self.staging_leftovers(target) == []

    @applies(capability="streaming")
    def test_micro_batches_publish_each_row_once(self, run, tmp_path, target):
        """A streaming pipeline (a files stream, ``available_now``) started twice with a new
        file between: each micro-batch staged and published, every row once."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.create_target(target, self.basic_columns())
        folder = tmp_path / "stream-in"
        folder.mkdir()
        source = {"type": "files", "format": "parquet", "path": str(folder),
                  "read_schema": "id BIGINT, name STRING, amount DOUBLE"}  # fmt: skip
        sink = {**self._with_credentials(self.sink_block(target, mode="append")), "input": "rows"}
        first, later = self.basic_rows(20), self.basic_rows(5, start=1000)
        for name, rows in (("a", first), ("b", later)):
            table = pa.Table.from_pylist(rows, schema=self.basic_schema())
            pq.write_table(table, folder / f"{name}.parquet")
            metrics = run(
                {"rows": source}, {"out": sink},
                execution="streaming", trigger={"available_now": True},
            )  # fmt: skip
            assert [b.batch_id for b in metrics.streaming] == [0 if name == "a" else 1]
        self.assert_target(target, first + later)
        assert self.staging_leftovers(target) == []

    @applies(capability=("streaming", "exactly_once"))
    def test_a_micro_batch_run_again_is_skipped_and_a_new_checkpoint_is_refused(
        self, run, tmp_path, target
    ):
        """Exactly once from a stream (DESIGN §9): a micro-batch that Spark runs again (its
        commit log entry and the run's completion marker gone, as after a crash between the
        sink's commit and Spark's) publishes nothing; a new checkpoint (new query id) is
        refused, naming the sink and `--start-over`, and accepted with it."""
        import shutil

        import pyarrow as pa
        import pyarrow.parquet as pq

        self.create_target(target, self.basic_columns())
        folder, later = tmp_path / "stream-in", tmp_path / "stream-later"
        source = {"type": "files", "format": "parquet", "path": str(folder),
                  "read_schema": "id BIGINT, name STRING, amount DOUBLE"}  # fmt: skip
        sink = {**self._with_credentials(self.sink_block(target, mode="append")), "input": "rows"}
        first, second = self.basic_rows(20), self.basic_rows(5, start=1000)
        for where, rows in ((folder, first), (later, second)):
            where.mkdir()
            table = pa.Table.from_pylist(rows, schema=self.basic_schema())
            pq.write_table(table, where / "part.parquet")
        stream = {"execution": "streaming", "trigger": {"available_now": True}}
        run({"rows": source}, {"out": sink}, **stream)
        checkpoint = tmp_path / ".etl" / "checkpoints" / "conformance"
        for name in ("0", ".0.crc"):  # as if the process died before Spark wrote them
            (checkpoint / "commits" / name).unlink(missing_ok=True)
        for marker in (tmp_path / ".etl" / "runs").glob("*.done"):
            marker.unlink()
        again = run({"rows": source}, {"out": sink}, **stream)
        assert [b.batch_id for b in again.streaming] == [0], "Spark did not run batch 0 again"
        self.assert_target(target, first)
        shutil.rmtree(checkpoint)
        moved = {**source, "path": str(later)}
        with pytest.raises(EtlError) as refused:
            run({"rows": moved}, {"out": sink}, **stream)
        assert "out" in str(refused.value) and "--start-over" in str(refused.value)
        self.assert_target(target, first)
        run({"rows": moved}, {"out": sink}, start_over=True, **stream)
        self.assert_target(target, first + second)
        assert self.staging_leftovers(target) == []

    def assert_load_fails(
        self, run: Any, tmp_path: Path, target: str, options: dict, error: type[EtlError]
    ) -> None:
        """Loading with ``options`` over the sink block fails with ``error`` naming the sink,
        without a secret."""
        folder = self.write_parquet(tmp_path / "in", self.basic_rows(3), self.basic_schema())
        sink = {**self._with_credentials(self.sink_block(target, mode="append")), **options}
        with pytest.raises(error) as failure:
            run(
                {"rows": {"type": "files", "format": "parquet", "path": str(folder)}},
                {"out": {**sink, "input": "rows"}},
            )
        assert "out" in str(failure.value), failure.value
        self.assert_no_secret(failure.value)

    def test_an_unreachable_endpoint_is_transient_and_names_the_sink(self, run, tmp_path, target):
        self.assert_load_fails(run, tmp_path, target, self.unreachable(), TransientError)

    def test_preflight_passes_then_reports_an_unreachable_endpoint(
        self, preflight, tmp_path, target
    ):
        """What ``etl run`` checks before Spark starts: a target ready to write passes; an
        endpoint nobody answers is reported under the sink's path, without a secret."""
        self.create_target(target, self.basic_columns())
        folder = self.write_parquet(tmp_path / "in", self.basic_rows(1), self.basic_schema())
        rows = {"rows": {"type": "files", "format": "parquet", "path": str(folder)}}
        sink = {**self._with_credentials(self.sink_block(target, mode="append")), "input": "rows"}
        preflight(rows, {"out": sink})
        with pytest.raises(PreflightFailed) as failure:
            preflight(rows, {"out": {**sink, **self.unreachable()}})
        assert str(failure.value).startswith("sinks.out: "), failure.value
        self.assert_no_secret(failure.value)

    def test_bad_credentials_are_permanent_and_name_the_sink(
        self, run, tmp_path, target, monkeypatch
    ):
        self.assert_load_fails(run, tmp_path, target, self.refused(monkeypatch), PermanentError)

    def test_secrets_do_not_leak_into_errors(self, run, tmp_path, target):
        folder = self.write_parquet(tmp_path / "in", self.basic_rows(3), self.basic_schema())
        sink = {**self._with_credentials(self.failing_sink_block(target)), "input": "rows"}
        with pytest.raises(EtlError) as failure:
            run(
                {"rows": {"type": "files", "format": "parquet", "path": str(folder)}}, {"out": sink}
            )
        self.assert_no_secret(failure.value)
        metrics = getattr(failure.value, "metrics", None)
        if metrics is not None:
            self.assert_no_secret(str(metrics.to_dict()))


class ExtractorConformance(ConformanceBase):
    """Tests every extractor must pass. Subclass, set ``component`` and provide the hooks."""

    component: ClassVar[str]
    component_kind: ClassVar[str] = "extractor"
    #: partition counts tried by the partition test
    partition_counts: ClassVar[tuple[int, ...]] = (1, 3, 7, 50)

    def source_block(self, target: str, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def partition_options(self, column: str, partitions: int) -> dict[str, Any]:
        raise NotImplementedError

    def failing_source_block(self, target: str) -> dict[str, Any]:
        raise NotImplementedError

    def incremental_options(self) -> dict[str, Any]:
        """The source's ``incremental:`` block for the generic rows, e.g. ``{"column": "id"}``
        or ``{"by": "modified_time"}`` (extractors declaring ``incremental``)."""
        raise NotImplementedError("declares incremental: provide incremental_options")

    def add_rows(self, target: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add generic rows to an existing target the way new data arrives (an insert, a new
        file) (extractors declaring ``incremental`` or ``streaming``)."""
        raise NotImplementedError("declares incremental or streaming: provide add_rows")

    def stream_options(self) -> dict[str, Any]:
        """Extra source options for reading the generic rows as a stream (e.g. the
        ``read_schema`` a file stream needs); extractors declaring ``streaming``."""
        return {}

    def extract(self, run: Any, tmp_path: Path, target: str, **options: Any) -> list[dict]:
        out = tmp_path / f"out-{uuid.uuid4().hex[:8]}"
        run(
            {"src": self._with_credentials(self.source_block(target, **options))},
            {"out": {"type": "files", "input": "src", "path": str(out), "mode": "overwrite"}},
        )
        return self.read_parquet(out) if out.exists() else []

    def test_round_trip(self, run, tmp_path, target):
        rows = self.basic_rows(1000)
        self.create_target(target, self.basic_columns(), rows)
        got = self.extract(run, tmp_path, target)
        assert rows_of(got, ["id", "name", "amount"]) == rows_of(rows, ["id", "name", "amount"])

    def test_empty_table(self, run, tmp_path, target):
        self.create_target(target, self.basic_columns())
        assert self.extract(run, tmp_path, target) == []

    def test_nulls(self, run, tmp_path, target):
        rows: list[dict[str, Any]] = [
            {"id": 1, "name": None, "amount": None},
            {"id": 2, "name": "", "amount": 0.0},
        ]
        self.create_target(target, self.basic_columns(), rows)
        got = self.extract(run, tmp_path, target)
        assert rows_of(got, ["id", "name", "amount"]) == rows_of(rows, ["id", "name", "amount"])

    def test_every_mapped_type(self, run, tmp_path, target):
        if not self.type_cases:
            pytest.skip("no type_cases declared")
        count = max(len(case.native_values) for case in self.type_cases)
        columns = [("id", self.basic_types["id"])]
        columns += [(c.column, c.native_type) for c in self.type_cases]
        rows = [
            {
                "id": i,
                **{
                    c.column: c.native_values[i] if i < len(c.native_values) else None
                    for c in self.type_cases
                },
            }
            for i in range(count)
        ]
        self.create_target(target, columns, rows)
        back = {row["id"]: row for row in self.extract(run, tmp_path, target)}
        assert sorted(back) == list(range(count))
        for case in self.type_cases:
            got = [norm(back[i][case.column]) for i in range(len(case.values))]
            want = [norm(v) for v in case.values]
            assert got == want, f"type case {case.column} ({case.native_type})"

    @applies(capability="partitioned_read")
    def test_partition_boundaries(self, run, tmp_path, target):
        ids = [-(2**40), -7, -1, 0, 1, 2, 3, 10, 11, 99, 100, 2**31 - 1, 2**31, 2**40]
        rows = [{"id": i, "name": str(i), "amount": 1.0} for i in ids]
        rows.append({"id": None, "name": "null key", "amount": 2.0})
        self.create_target(target, self.basic_columns(), rows)
        for partitions in self.partition_counts:
            got = self.extract(run, tmp_path, target, **self.partition_options("id", partitions))
            assert rows_of(got, ["id", "name"]) == rows_of(rows, ["id", "name"]), partitions

    @applies(capability="incremental")
    def test_an_incremental_read_returns_each_row_once(self, run, tmp_path, target):
        """The bookmark persists between runs (the same ``base_dir``): new rows only."""
        columns, first = ["id", "name", "amount"], self.basic_rows(20)
        self.create_target(target, self.basic_columns(), first)
        incremental = {"incremental": self.incremental_options()}
        got = self.extract(run, tmp_path, target, **incremental)
        assert rows_of(got, columns) == rows_of(first, columns)
        assert self.extract(run, tmp_path, target, **incremental) == []
        later = self.basic_rows(5, start=1000)
        self.add_rows(target, later)
        got = self.extract(run, tmp_path, target, **incremental)
        assert rows_of(got, columns) == rows_of(later, columns)

    @applies(capability="streaming")
    def test_a_stream_reads_each_row_once_across_restarts(self, run, tmp_path, target):
        """``execution: streaming`` with ``available_now``, started three times, rows added
        after the first: every row once, and nothing when nothing is new."""
        columns, first, later = ["id", "name", "amount"], self.basic_rows(20), []
        self.create_target(target, self.basic_columns(), first)
        out = tmp_path / f"stream-{uuid.uuid4().hex[:8]}"
        block = self._with_credentials(self.source_block(target, **self.stream_options()))
        for start in range(3):
            metrics = run(
                {"src": block},
                {"out": {"type": "files", "input": "src", "path": str(out)}},
                execution="streaming", trigger={"available_now": True},
            )  # fmt: skip
            if start == 0:
                later = self.basic_rows(5, start=1000)
                self.add_rows(target, later)
            elif start == 2:
                assert metrics.streaming == []
        assert rows_of(self.read_parquet(out), columns) == rows_of(first + later, columns)

    def test_a_reread_returns_the_same_rows(self, run, tmp_path, target):
        """Spark may run a partition's read again (a retried task): reads are deterministic."""
        rows = self.basic_rows(300)
        self.create_target(target, self.basic_columns(), rows)
        columns = ["id", "name", "amount"]
        first = self.extract(run, tmp_path, target, **self.partition_options("id", 3))
        again = self.extract(run, tmp_path, target, **self.partition_options("id", 3))
        assert rows_of(first, columns) == rows_of(again, columns) == rows_of(rows, columns)

    def assert_extract_fails(
        self, run: Any, tmp_path: Path, target: str, options: dict, error: type[EtlError]
    ) -> None:
        """Reading with ``options`` over the source block fails with ``error`` naming the
        source, without a secret."""
        source = {**self._with_credentials(self.source_block(target)), **options}
        sink = {"type": "files", "input": "src", "path": str(tmp_path / "out")}
        with pytest.raises(error) as failure:
            run({"src": source}, {"out": sink})
        assert "src" in str(failure.value), failure.value
        self.assert_no_secret(failure.value)

    def test_an_unreachable_endpoint_is_transient_and_names_the_source(self, run, tmp_path, target):
        self.assert_extract_fails(run, tmp_path, target, self.unreachable(), TransientError)

    def test_preflight_passes_then_reports_an_unreachable_endpoint(
        self, preflight, tmp_path, target
    ):
        """What ``etl run`` checks before Spark starts: a readable source passes; an endpoint
        nobody answers is reported under the source's path, without a secret."""
        self.create_target(target, self.basic_columns(), self.basic_rows(1))
        source = self._with_credentials(self.source_block(target))
        sink = {"out": {"type": "files", "input": "src", "path": str(tmp_path / "out")}}
        preflight({"src": source}, sink)
        with pytest.raises(PreflightFailed) as failure:
            preflight({"src": {**source, **self.unreachable()}}, sink)
        assert str(failure.value).startswith("sources.src: "), failure.value
        self.assert_no_secret(failure.value)

    def test_bad_credentials_are_permanent_and_name_the_source(
        self, run, tmp_path, target, monkeypatch
    ):
        self.assert_extract_fails(run, tmp_path, target, self.refused(monkeypatch), PermanentError)

    def test_secrets_do_not_leak_into_errors(self, run, tmp_path, target):
        source = self._with_credentials(self.failing_source_block(target))
        sink = {"type": "files", "input": "src", "path": str(tmp_path / "out")}
        with pytest.raises(EtlError) as failure:
            run({"src": source}, {"out": sink})
        self.assert_no_secret(failure.value)
        metrics = getattr(failure.value, "metrics", None)
        if metrics is not None:
            self.assert_no_secret(str(metrics.to_dict()))
