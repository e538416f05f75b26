"""Progress and quiet exports for the command line (``python -m harness`` / ``export-conformance``).

Kept apart from ``__main__`` so that ``--help`` imports neither rich nor torch.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Steps", "quiet_torch"]

#: Loggers whose warnings during an export are about the environment, never about the model:
#: torch's ONNX exporter tells every export that torchvision's operators are not registered.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration",)
_NOISE = ("torchvision is not installed",)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


@contextmanager
def quiet_torch() -> Iterator[None]:
    """Hide what torch's export path prints that is no error: "torchvision is not installed"
    log lines and deprecation warnings raised inside torch. Errors and exceptions pass through."""
    noise = _DropNoise()
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*torchvision.*")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


class Steps:
    """Which of ``total`` long steps (exports, a localisation) runs, and how many are done.

    On a terminal: a rich progress line on stderr (spinner, step, done/total, elapsed) and one
    line per finished step. Otherwise (CI logs, pipes, tests): one plain line on stderr as each
    step starts. stdout is never written, so scripts can read the command's results from it.
    """

    def __init__(self, prog: str, total: int, stream: TextIO | None = None) -> None:
        self.prog = prog
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        """Show ``description`` while the block runs; count it done when it ends (even on error)."""
        if self._progress is not None:
            self._progress.update(self._task, description=description)
        else:
            print(f"{self.prog}: [{self.done + 1}/{self.total}] {description}", file=self.stream, flush=True)
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.done += 1
            if self._progress is not None:
                self._progress.advance(self._task)
                from rich.markup import escape

                mark = "[green]done[/green]" if ok else "[red]failed[/red]"
                elapsed = time.perf_counter() - start
                self._progress.console.print(f"{escape(description)}: {mark} in {elapsed:.1f} s")
