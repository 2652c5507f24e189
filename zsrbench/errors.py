"""zsrbench's own exception: an error the user can fix, shown without a traceback."""

from __future__ import annotations


class ZsrError(Exception):
    """An error caused by the user's input (a name, a path, a value).

    The message says what went wrong and what to do. The CLI prints it without a traceback and exits 2.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`ZsrError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ZsrError(message)
