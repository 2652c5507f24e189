"""Machine-local paths: whether a value (or, in free text, a token) names a path that only means something on one
machine (an absolute path, ``~/…``, ``local-dir:/…``), and where a model's fields name one. ``zsrbench validate``
reports them; ``zsrbench migrate-paths`` rewrites them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

_LOCAL_VALUE = re.compile(r"^(?:local-dir:)?(?:/|~[\w.-]*(?:/|$)|[A-Za-z]:[\\/]|\\\\)")
# inside free text (notes, descriptions): a token that starts like an absolute path and has a second component
_LOCAL_IN_TEXT = re.compile(r"(?:^|[\s'\"(\[=,;])((?:local-dir:)?(?:~[\w.-]*/|/)[\w.@+-]+/[^\s'\")\],;]*)")
FREE_TEXT_FIELDS = ("notes", "description")


def is_machine_local(value: str) -> bool:
    """Whether ``value`` is (or, as text, contains) a path that only means something on one machine."""
    return bool(_LOCAL_VALUE.match(value.strip()) or _LOCAL_IN_TEXT.search(value))


def local_paths(model: BaseModel | dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(field, value)`` of every string in a model's fields (``ModelInfo``/``EntryModel``, hyper-parameters and
    notes included) that names a machine-local path: an absolute path, ``~/…`` or ``local-dir:/…``."""
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    out: list[tuple[str, str]] = []

    def walk(value: Any, where: str, text: bool) -> None:
        if isinstance(value, str):
            local = _LOCAL_IN_TEXT.search(value) if text else is_machine_local(value)
            if local:
                out.append((where, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k), text or k in FREE_TEXT_FIELDS)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", text)

    walk(data, prefix, False)
    return out
