"""zsrbench's progress lines, warnings and errors: the ``zsrbench`` logger, printed to standard error.

``--verbose`` / ``--quiet`` set its level. Output that is not a terminal is never wrapped (a log keeps each path
on one line); ``$COLUMNS`` sets a width anyway.
"""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console
from rich.markup import escape

UNWRAPPED = 100_000  # the width of a console that is not a terminal: long lines stay whole
LOG = logging.getLogger("zsrbench")


def make_console(stderr: bool = False) -> Console:
    """A console of the terminal's width, or one that never wraps when the stream is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    wide = not tty and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=UNWRAPPED if wide else None)


class ConsoleHandler(logging.Handler):
    """Log records as zsrbench prints them: information plain, ``warning:`` in yellow, ``error:`` in red."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = escape(record.getMessage())
            if record.levelno >= logging.ERROR:
                text = f"[bold red]error:[/] {text}"
            elif record.levelno >= logging.WARNING:
                text = f"[yellow]warning:[/] {text}"
            elif record.levelno < logging.INFO:
                text = f"[dim]{text}[/]"
            make_console(stderr=True).print(text, highlight=False, soft_wrap=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """The ``zsrbench`` logger's level: DEBUG with --verbose, WARNING with --quiet, else INFO."""
    if not any(isinstance(h, ConsoleHandler) for h in LOG.handlers):
        LOG.addHandler(ConsoleHandler())
    LOG.propagate = False
    LOG.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def info(message: str) -> None:
    """A progress line (the ``log`` callable the Python API takes)."""
    LOG.info(message)


def progress_display(enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    class Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[override]
            from rich.text import Text

            elapsed = task.finished_time if task.finished else task.elapsed
            speed = task.completed / elapsed if elapsed else 0.0
            return Text(f"{speed:.1f} img/s" if speed else "- img/s")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    Rate(), TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False,
                    console=make_console(stderr=True))  # progress is not a result: standard error
