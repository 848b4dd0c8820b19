"""``etl dlq replay``: feed dead letters back into a (fixed) pipeline.

Which records go where:

- records of stage ``extract`` or ``validate`` of dataset ``D`` become ``D``'s rows (the source
  is not read, or the transform not run); ``D``'s validation, if any, runs on them again. A
  source's ``extract`` records are parsed by its extractor (:meth:`Extractor.replay`: for the
  ``files`` source, the malformed lines with its current options and read schema);
  ``validate`` records are parsed from JSON into ``D``'s schema;
- records of stage ``transform`` of transform ``T`` are ``T``'s input rows (``T`` has one input):
  ``T`` runs on them again;
- every other dataset is computed as in a run; only the sinks downstream of the replayed rows
  are staged and published, bookmarks never move.

The run id is derived from the dead letters' path (and ``--from-stage``), so replaying the same
path again is a no-op (the completed run id), and an interrupted replay resumes like a run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_core.api import DEAD_LETTER_DDL
from etl_core.config.model import Bound, BoundPipeline, SourceSpec
from etl_core.config.schema import schema_ddl
from etl_core.errors import EtlError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from etl_core.run.live import LiveRun

#: stages whose records replay feeds back
STAGES = ("extract", "validate", "transform")


class ReplayError(EtlError):
    """The dead letters cannot be replayed into this pipeline."""


def replay_run_id(path: Path, stage: str | None) -> str:
    digest = hashlib.sha256(f"{path.resolve()}\x00{stage or ''}".encode()).hexdigest()
    return f"replay-{digest[:16]}"


def record_files(path: Path) -> list[Path]:
    """The dead-letter files under ``path`` (a file or a folder), skipping hidden folders."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*.json*")
        if p.is_file()
        and p.suffix in (".jsonl", ".json")
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )


class Replay:
    """What a replay feeds where: the run's :class:`~etl_core.run.build.Feed`, asked for the
    datasets and inputs it replaces; ``sinks`` are the only ones staged."""

    def __init__(
        self, bound: BoundPipeline, records: DataFrame, keys: set[tuple[str, str]], schemas: Any
    ):
        self.bound, self.records, self.schemas = bound, records, schemas
        plan, spec = bound.plan, bound.spec
        problems = []
        for stage, dataset in sorted(keys):
            if stage not in STAGES:
                problems.append(f"records of stage {stage!r} cannot be replayed (only {STAGES})")
            elif dataset not in plan.order:
                problems.append(f"records of dataset {dataset!r}, which the pipeline lacks")
            elif stage == "extract" and dataset not in spec.sources:
                problems.append(f"extract records of {dataset!r}, which is not a source")
            elif stage == "transform" and (
                dataset not in spec.transforms or len(spec.transforms[dataset].inputs) != 1
            ):
                problems.append(f"transform records of {dataset!r}, which has several inputs")
        if problems:
            raise ReplayError("cannot replay these dead letters:\n  - " + "\n  - ".join(problems))
        self.datasets = {d for s, d in keys if s in ("extract", "validate")}
        self.transforms = {d for s, d in keys if s == "transform"} - self.datasets
        replayed: set[str] = set()
        for name in plan.order:  # dependency order: inputs first
            inputs = plan.nodes[name].inputs
            if name in self.datasets | self.transforms or replayed & set(inputs):
                replayed.add(name)
        self.replayed = replayed
        self.sinks = [s for s in plan.sinks if spec.sinks[s].input in replayed]

    def needed(self) -> list[str]:
        """The datasets the replayed sinks need, in dependency order; nothing upstream of a
        replayed dataset, nor of a fed transform's input unless that input is replayed too."""
        plan = self.bound.plan
        needed: set[str] = set()
        todo = [self.bound.spec.sinks[s].input for s in self.sinks]
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            needed.add(name)
            if name in self.datasets:
                continue
            inputs = list(plan.nodes[name].inputs)
            if name in self.transforms:
                inputs = [i for i in inputs if i in self.replayed]
            todo += inputs
        return [name for name in plan.order if name in needed]

    def _rows(self, stage: str, dataset: str) -> DataFrame:
        from pyspark.sql import functions as F

        return self.records.filter((F.col("stage") == stage) & (F.col("dataset") == dataset))

    def _parsed(self, stage: str, dataset: str, schema: Any) -> DataFrame:
        from pyspark.sql import functions as F

        rows = self._rows(stage, dataset)
        return rows.select(F.from_json("row", schema).alias("r")).select("r.*")

    def dataset(self, live: LiveRun, item: Bound, options: Any) -> tuple[Bound, str, DataFrame]:
        name = item.name
        schema = self.schemas[name]
        frames = [self._parsed("validate", name, schema)]
        if isinstance(item.block, SourceSpec):
            ctx = live.context(item, read_schema=schema_ddl(item.block.read_schema))
            extract = self._rows("extract", name)
            parsed = item.component().replay(ctx, options, extract, schema)
            frames.append(self._parsed("extract", name, schema) if parsed is None else parsed)
        df = frames[0]
        for more in frames[1:]:
            df = df.unionByName(more)
        return item, "extract" if isinstance(item.block, SourceSpec) else "transform", df

    def inputs(self, live: LiveRun, name: str) -> dict[str, DataFrame]:
        (input_name,) = self.bound.spec.transforms[name].inputs
        rows = self._parsed("transform", name, self.schemas[input_name])
        if input_name in self.replayed:
            rows = rows.unionByName(live.frames[input_name])
        return {input_name: rows}


def read_dead_letters(
    spark: SparkSession, pipeline: str, path: Path, from_stage: str | None
) -> tuple[DataFrame, set[tuple[str, str]]]:
    """The dead-letter records under ``path`` (of ``from_stage`` only, when given) and the
    ``(stage, dataset)`` pairs they hold. Refuses another pipeline's dead letters."""
    from pyspark.sql import functions as F

    files = record_files(path)
    if not files:
        raise ReplayError(f"{path}: no dead-letter files (*.jsonl) found")
    if from_stage is not None and from_stage not in STAGES:
        raise ReplayError(f"--from-stage {from_stage}: choose one of {', '.join(STAGES)}")
    records = spark.read.schema(DEAD_LETTER_DDL).json([str(f) for f in files])
    others = records.filter(F.col("pipeline") != pipeline).select("pipeline").limit(1).collect()
    if others:
        raise ReplayError(
            f"{path}: holds dead letters of pipeline {others[0]['pipeline']!r}, not {pipeline!r}"
        )
    if from_stage is not None:
        records = records.filter(F.col("stage") == from_stage)
    keys = {
        (r["stage"], r["dataset"]) for r in records.select("stage", "dataset").distinct().collect()
    }
    if not keys:
        raise ReplayError(f"{path}: no dead letters of stage {from_stage}")
    return records, keys
