"""What every CLI module shares: the consoles and the one way a user error is shown (exit code 2)."""

from __future__ import annotations

import functools
from typing import Any, Callable, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from zsrbench.errors import ZsrError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one paragraph (no traceback, no markup interpretation) and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ZsrError` into :func:`fail` (exit code 2)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZsrError as exc:
            fail(str(exc))

    return wrapper
