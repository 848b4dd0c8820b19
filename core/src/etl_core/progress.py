"""What a run shows while it works: a live line on a terminal, plain lines elsewhere.

On a terminal a spinner names the current step and, while Spark runs jobs, the tasks done
of the active stages (Spark's progress counts tasks, not rows). ``--quiet`` shows nothing.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Any


def _spark_tasks() -> str | None:
    """``stage 3: 5/8 tasks`` for Spark's active stages, or ``None`` when nothing runs."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context  # noqa: SLF001 - the process's one context
    if sc is None:
        return None
    tracker = sc.statusTracker()
    parts = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            parts.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
    return ", ".join(parts) or None


class ConsoleProgress:
    """A progress callback (``progress(message)``) that is also a context manager."""

    def __init__(
        self,
        *,
        quiet: bool = False,
        stream: IO[str] | None = None,
        force_terminal: bool | None = None,
        poll_s: float = 0.5,
    ):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty() if force_terminal is None else force_terminal
        self.live = terminal and not quiet
        self.poll_s = poll_s
        self._step = ""
        self._status: Any = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if self.live:
            from rich.console import Console

            self.console = Console(file=self.stream, force_terminal=True)

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        if not self.live:
            print(f"· {message}", file=self.stream, flush=True)
            return
        if self._step:
            self.console.print(f"[green]✓[/] {self._step}")
        self._step = message
        if self._status is not None:
            self._status.update(message)

    def __enter__(self) -> ConsoleProgress:
        if self.live:
            self._status = self.console.status("starting")
            self._status.start()
            self._poller = threading.Thread(target=self._poll, name="etl-progress", daemon=True)
            self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2)
        if self._status is not None:
            self._status.stop()
            if self._step and exc[0] is None:
                self.console.print(f"[green]✓[/] {self._step}")

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                tasks = _spark_tasks()
            except Exception:  # noqa: BLE001, S112 - progress must never break a run
                continue
            if self._status is not None:
                self._status.update(f"{self._step} — {tasks}" if tasks else self._step)
