"""What every CLI module shares: the consoles and the one way an error is shown (exit code 2).

Tables and other results go to standard output; progress lines, warnings and errors go to standard error
(:mod:`zsrbench.log`).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, NoReturn, Optional

import typer
from rich.markup import escape

from zsrbench.errors import ZsrError
from zsrbench.log import info, make_console, setup_logging  # noqa: F401 (re-exported for the CLI modules)


console = make_console()
err_console = make_console(stderr=True)
setup_logging()  # any command, also one mounted on another app, logs as zsrbench does; the root's -v/-q adjust it


def error_text(message: str) -> str:
    return f"[bold red]error:[/] {escape(message)}"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one paragraph (no traceback, no markup interpretation) and exit with ``code``."""
    err_console.print(error_text(message), highlight=False, soft_wrap=True)
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


class ZsrGroup(typer.core.TyperGroup):
    """The root command: click's usage errors (an unknown option, a value of the wrong type) are shown in the
    same one-paragraph style as zsrbench's own errors, with the command's --help named, exit code 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:  # typer's (vendored) click: usage errors and the like
            text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                text += f" (see '{ctx.command_path} --help')"
            err_console.print(error_text(text), highlight=False, soft_wrap=True)
            return _leave(int(getattr(exc, "exit_code", 2)), standalone_mode)
        except typer.Abort:
            err_console.print(error_text("interrupted"), highlight=False)
            return _leave(130, standalone_mode)
        return _leave(rv if isinstance(rv, int) else 0, standalone_mode)


def _leave(code: int, standalone_mode: bool) -> Any:
    if standalone_mode:
        sys.exit(code)
    return code


def default_protocol() -> str:
    """The protocol commands use when none is given: micro (shipped with the package), else synthetic."""
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    return "micro" if "micro" in PROTOCOLS else "synthetic"


def csv_names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    """A comma-separated option as names (None: not given)."""
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())  # () when given but naming nothing (refused)
