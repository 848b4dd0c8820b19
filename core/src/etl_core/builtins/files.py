"""The ``files`` source and sink: csv, json/jsonl and parquet on a local (or mounted) filesystem.

The sink stages a run's files under ``<path>/_etl/tmp/<run_key>/<n>/`` (names starting with
``_`` are invisible to Spark, pyarrow and this source) and publishes by moving them into place
and writing ``<path>/_etl/manifests/<run_key>.json``, the run's ledger entry.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from etl_core.api import Context, Extractor, Loader, LoadError, PermanentError, Staged
from etl_core.options import one_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FORMATS = ("csv", "json", "jsonl", "parquet")
MANIFESTS = Path("_etl") / "manifests"
STAGING = Path("_etl") / "tmp"


def _spark_format(fmt: str) -> str:
    return "json" if fmt == "jsonl" else fmt


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def data_files(root: Path) -> Iterator[Path]:
    """Visible data files under ``root`` (what Spark would read), relative to it."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for filename in filenames:
            relative = (Path(dirpath) / filename).relative_to(root)
            if not _hidden(relative):
                yield relative


def manifest_files(root: Path) -> list[Path] | None:
    """The files that published manifests list (their union), or ``None`` without manifests."""
    folder = root / MANIFESTS
    if not folder.is_dir():
        return None
    listed: list[Path] = []
    for manifest in sorted(folder.glob("*.json")):
        listed += [Path(f) for f in json.loads(manifest.read_text())["files"]]
    return listed


def _reader_options(
    fmt: str, header: bool, delimiter: str, extra: dict[str, str]
) -> dict[str, str]:
    options = {"header": str(header).lower(), "sep": delimiter} if fmt == "csv" else {}
    return {**options, **extra}


@attrs.frozen
class FilesSourceOptions:
    path: str
    format: str = attrs.field(validator=one_of(*FORMATS))
    header: bool = True
    delimiter: str = ","
    options: dict[str, str] = attrs.field(factory=dict)


class FilesExtractor(Extractor):
    """Read csv, json/jsonl or parquet files: a file, a folder or a glob."""

    name = "files"
    Options = FilesSourceOptions
    capabilities = frozenset({"batch", "partitioned_read"})

    def extract(self, ctx: Context, options: FilesSourceOptions) -> DataFrame:
        root = ctx.path(options.path)
        reader = ctx.spark.read.format(_spark_format(options.format)).options(
            **_reader_options(options.format, options.header, options.delimiter, options.options)
        )
        if ctx.read_schema:
            reader = reader.schema(ctx.read_schema)
        listed = manifest_files(root) if root.is_dir() else None
        if listed is None:
            return reader.load(str(root))
        paths = [str(root / f) for f in listed if (root / f).exists()]
        if paths:
            return reader.load(paths)
        if ctx.read_schema:
            return ctx.spark.createDataFrame([], ctx.read_schema)
        raise PermanentError(
            f"{root} has no published data files; declare `read_schema` on the source to read "
            "it as an empty dataset"
        )


@attrs.frozen
class FilesSinkOptions:
    path: str
    format: str = attrs.field(default="parquet", validator=one_of(*FORMATS))
    mode: str = attrs.field(default="error", validator=one_of("append", "overwrite", "error"))
    header: bool = True
    compression: str | None = None
    options: dict[str, str] = attrs.field(factory=dict)


class FilesLoader(Loader):
    """Write csv, json/jsonl or parquet files into a folder, atomically per run."""

    name = "files"
    Options = FilesSinkOptions
    capabilities = frozenset({"batch"})
    modes: ClassVar[frozenset[str]] = frozenset({"append", "overwrite", "error"})

    @staticmethod
    def _staging(ctx: Context, options: FilesSinkOptions) -> Path:
        return ctx.path(options.path) / STAGING / ctx.run_key / str(ctx.sink_index)

    def stage(self, ctx: Context, df: DataFrame, options: FilesSinkOptions) -> Staged:
        target = ctx.path(options.path)
        self._refuse_existing(target, options)
        staging = self._staging(ctx, options)
        shutil.rmtree(staging, ignore_errors=True)
        writer_options = _reader_options(options.format, options.header, ",", options.options)
        if options.compression:
            writer_options["compression"] = options.compression
        df.write.format(_spark_format(options.format)).options(**writer_options).save(str(staging))
        return Staged(ctx.dataset, ctx.sink_index or 0, ctx.run_key, {"staging": str(staging)})

    @staticmethod
    def _refuse_existing(target: Path, options: FilesSinkOptions) -> None:
        if options.mode == "error" and next(data_files(target), None) is not None:
            raise LoadError(
                f"{target} already holds data and the sink's mode is `error`; "
                "set `mode: append` or `mode: overwrite`, or empty the folder"
            )

    def publish(self, ctx: Context, staged: Staged, options: FilesSinkOptions) -> None:
        target = ctx.path(options.path)
        manifest = target / MANIFESTS / f"{ctx.run_key}.json"
        if manifest.exists():  # this run already published here: nothing more to do
            self.discard(ctx, staged, options)
            return
        self._refuse_existing(target, options)
        staging = self._staging(ctx, options)
        new_files = sorted(data_files(staging))
        replaced = staging.parent / f"{ctx.sink_index}.replaced"
        existing = sorted(data_files(target))
        old_files = existing if options.mode == "overwrite" else []
        # The first manifest adopts files that were there before etl, so manifest readers keep them.
        adopted = [] if old_files or (target / MANIFESTS).is_dir() else [str(f) for f in existing]
        moves: list[tuple[Path, Path]] = []
        try:
            for relative in old_files:
                _move(target / relative, replaced / relative, moves)
            for relative in new_files:
                if (target / relative).exists():
                    relative = relative.with_name(f"{uuid.uuid4().hex[:8]}-{relative.name}")
                _move(staging / relative, target / relative, moves)
            published = [
                str(dst.relative_to(target)) for _, dst in moves if dst.is_relative_to(target)
            ]
            _write_manifest(manifest, ctx, options, adopted + published)
        except BaseException:
            for src, dst in reversed(moves):  # put everything back as it was
                if dst.exists():
                    dst.replace(src)
            raise
        if options.mode == "overwrite":
            for other in (target / MANIFESTS).glob("*.json"):
                if other != manifest:
                    other.unlink()
        shutil.rmtree(replaced, ignore_errors=True)
        self.discard(ctx, staged, options)

    def discard(self, ctx: Context, staged: Staged, options: FilesSinkOptions) -> None:
        staging = self._staging(ctx, options)
        shutil.rmtree(staging, ignore_errors=True)
        for folder in (staging.parent, staging.parent.parent, staging.parent.parent.parent):
            try:
                folder.rmdir()  # only when empty: other sinks of the run may still stage here
            except OSError:
                break

    @classmethod
    def dead_letter_options(
        cls, options: FilesSinkOptions, *, pipeline: str, run_key: str, stage: str
    ) -> FilesSinkOptions:
        path = str(Path(options.path) / pipeline / run_key / stage)
        return attrs.evolve(options, path=path, format="jsonl", mode="append")


def _move(src: Path, dst: Path, moves: list[tuple[Path, Path]]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dst)
    moves.append((src, dst))


def _write_manifest(path: Path, ctx: Context, options: FilesSinkOptions, files: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {
        "pipeline": ctx.pipeline,
        "run_id": ctx.run_id,
        "sink": ctx.dataset,
        "mode": options.mode,
        "format": options.format,
        "published_at": dt.datetime.now(dt.UTC).isoformat(),
        "files": files,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1))
    tmp.replace(path)
