"""Parsing JSON that zsrbench reads back: records, entries, audits, manifests and configs, one strict way.

A file on disk may have been edited, damaged or crafted. :func:`parse` refuses, as a :class:`ZsrError` naming the
file, what the standard parser would let through or crash on:

* a key that appears twice in one object (the standard parser keeps the last value silently, while another
  reader may keep the first: one file, two numbers);
* nesting deeper than :data:`MAX_DEPTH` levels (zsrbench writes at most a handful; 100,000 levels make the
  standard parser, and every recursive walk after it, raise ``RecursionError``);
* anything that is not UTF-8 JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError

MAX_DEPTH = 64  # levels of objects and arrays; zsrbench's own documents use fewer than 10


class UnreadableJSON(ZsrError):
    """A document :func:`parse` refuses; ``reason`` says why in a few words."""

    def __init__(self, where: str | Path, what: str, reason: str, advice: str) -> None:
        super().__init__(f"{where}: not a readable {what}: {reason}{advice}")
        self.reason = reason


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        stack.extend((c, d + 1) for c in children)
    return deepest


def parse(blob: bytes | str, where: str | Path, what: str = "JSON document") -> Any:
    """The JSON value of ``blob``; a :class:`ZsrError` naming ``where`` when it is not one zsrbench can trust."""
    try:
        value = json.loads(blob, object_pairs_hook=_unique)
    except _Duplicate as exc:
        raise UnreadableJSON(where, what, f"the key {exc.key!r} appears twice in one object (a reader could take "
                             "either value)", "; restore the file, or write it again with zsrbench.") from None
    except RecursionError:
        raise UnreadableJSON(where, what, f"it is nested too deeply to read (zsrbench's files nest at most "
                             f"{MAX_DEPTH} levels)", "; restore the file.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableJSON(where, what, str(exc), ".") from None
    if depth(value) > MAX_DEPTH:
        raise UnreadableJSON(where, what, f"it nests more than {MAX_DEPTH} levels of objects and arrays (zsrbench's "
                             "files nest fewer than 10)", "; restore the file.")
    return value


def read(path: str | Path, what: str = "JSON document") -> Any:
    """:func:`parse` of the file ``path`` (an unreadable file is a :class:`ZsrError` too)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise UnreadableJSON(path, what, str(exc.strerror or exc), ".") from None
    return parse(blob, path, what)
