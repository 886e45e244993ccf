"""The terminal view of a run: a ``rich`` progress line, or plain periodic lines off a TTY."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["ProgressReporter", "format_status"]

_PLAIN_INTERVAL_S = 10.0


def format_status(status: dict[str, Any]) -> str:
    """One line: env steps, fps, mean episode return, policy lag, dropped messages."""
    ret = status.get("episode_return", float("nan"))
    ret_text = "   n/a" if ret is None or math.isnan(ret) else f"{ret:8.3f}"
    return (f"steps {status.get('env_steps', 0):>10,}  fps {status.get('fps', 0.0):8.0f}  "
            f"return {ret_text}  lag {status.get('policy_lag', 0.0):5.2f}  "
            f"v{status.get('policy_version', 0)}  dropped {status.get('dropped', 0)}")


class ProgressReporter:
    """Shows learner status; events (restarts, Ctrl-C) print above the line."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True, soft_wrap=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_plain = 0.0

    def start(self, total_steps: int) -> None:
        if not self.enabled:
            return
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]explorer"), BarColumn(), TextColumn("{task.fields[line]}"),
                TimeElapsedColumn(), console=self.console, transient=False,
            )
            self._task = self._progress.add_task("run", total=total_steps, line="starting")
            self._progress.start()

    def update(self, status: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = format_status(status)
        if self._progress is not None:
            self._progress.update(self._task, completed=status.get("env_steps", 0), line=line)
        elif time.monotonic() - self._last_plain > _PLAIN_INTERVAL_S:
            self._last_plain = time.monotonic()
            self.console.print(line, highlight=False)

    def event(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]supervisor:[/dim] {text}", highlight=False)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
