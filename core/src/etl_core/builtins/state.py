"""The built-in ``file`` state store: one JSON file of bookmarks per pipeline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import attrs

from etl_core.api import StateStore, exclusive_lock, held_by_another_run


@attrs.frozen
class FileStateOptions:
    #: folder of the state files, relative to the pipeline file's folder
    dir: str = ".etl/state"


class FileStateStore(StateStore):
    """Bookmarks in ``<dir>/<pipeline>.json``, replaced atomically; a run holds
    ``<dir>/<pipeline>.lock``."""

    name = "file"
    Options = FileStateOptions

    @staticmethod
    def _file(base_dir: Path, pipeline: str, options: FileStateOptions) -> Path:
        folder = Path(options.dir)
        return (folder if folder.is_absolute() else base_dir / folder) / f"{pipeline}.json"

    def hold(
        self, base_dir: Path, pipeline: str, options: FileStateOptions
    ) -> AbstractContextManager[Any]:
        lock = self._file(base_dir, pipeline, options).with_suffix(".lock")
        return exclusive_lock(lock, held_by_another_run(pipeline, f"lock {lock}"))

    def load(self, base_dir: Path, pipeline: str, options: FileStateOptions) -> dict[str, Any]:
        path = self._file(base_dir, pipeline, options)
        return json.loads(path.read_text()) if path.exists() else {}

    def save(
        self, base_dir: Path, pipeline: str, bookmarks: Mapping[str, Any], options: FileStateOptions
    ) -> None:
        path = self._file(base_dir, pipeline, options)
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**self.load(base_dir, pipeline, options), **bookmarks}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True, default=str))
        tmp.replace(path)
