"""Which runs are live: a run's key, its lock file beside the pipeline, and the live/dead runs
that ``clean_stale`` asks loaders about (DESIGN §4, names and liveness)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from etl_core.api import LiveRuns, exclusive_lock

#: completion markers (``.etl/runs/<run_key>.done``) answer reruns of a finished run this long
DONE_MARKER_DAYS = 30


def run_key(pipeline: str, run_id: str) -> str:
    """The first 12 hex digits of sha256(pipeline, run_id): short, safe staging names."""
    return hashlib.sha256(f"{pipeline}\x00{run_id}".encode()).hexdigest()[:12]


def runs_folder(base_dir: Path) -> Path:
    return base_dir / ".etl" / "runs"


@contextmanager
def run_lock(base_dir: Path, key: str) -> Iterator[Path]:
    """Hold ``.etl/runs/<run_key>.lock`` exclusively while the run is live."""
    path = runs_folder(base_dir) / f"{key}.lock"
    refusal = f"run {key} is already running (lock {path}); wait for it or use another --run-id"
    with exclusive_lock(path, refusal):
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)


def live_runs(base_dir: Path) -> LiveRuns:
    """Which runs beside this pipeline are live (their lock is held) or known dead (their lock
    file is left but free: the process died, e.g. by SIGKILL)."""
    live, dead = set(), set()
    for path in sorted(runs_folder(base_dir).glob("*.lock")):
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(path.stem)
                continue
            dead.add(path.stem)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return LiveRuns(frozenset(live), frozenset(dead))
