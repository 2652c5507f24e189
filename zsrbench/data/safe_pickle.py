"""Reading dataset files that are pickles without running any code they might hold.

A pickle names the callables that rebuild its objects, and ``pickle.load`` calls whatever it names, so a
tampered dataset file could run anything. :func:`load` unpickles with an allow-list instead: the built-in
containers and scalars (which pickle builds without naming any callable) and the few numpy callables that
rebuild an array. That is all the python versions of CIFAR-10/100 hold: dicts of lists of ``str``/``int`` and
a ``uint8`` array ``data``, pickled by Python 2 (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, the raw bytes as a Python 2 ``str``); a copy re-pickled by Python 3 also names
``_codecs.encode`` (protocol 2), ``numpy._core...`` (numpy 2) or ``numpy.core.numeric._frombuffer``
(protocol 5). Any other name is refused with an :class:`UnsafePickleError` naming the file.
"""

from __future__ import annotations

import codecs
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from zsrbench.data.layout import DataLayoutError


class UnsafePickleError(DataLayoutError):
    """A dataset pickle names a callable its format never holds."""


def load(path: Path, what: str, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` (``what`` names its format in errors, e.g. "a CIFAR file"), allowing only the
    built-in containers and scalars and numpy arrays; anything else raises :class:`UnsafePickleError`."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, path, what, encoding=encoding).load()


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only the names of :func:`allowed_globals`, never importing."""

    def __init__(self, file: BinaryIO, path: Path, what: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._path = path
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        found = allowed_globals().get((module, name))
        if found is None:
            raise UnsafePickleError(refusal(self._path, f"{module}.{name}", self._what))
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(refusal(self._path, "persistent id", self._what))


def refusal(path: Path, kind: str, what: str) -> str:
    return (f"{path} contains a pickled object of type {kind} that {what} never holds; it was not loaded (loading "
            "it could run code). The file may have been tampered with: delete it and re-download it from the "
            "dataset's official source.")


@lru_cache(maxsize=1)
def allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object, for every name a numpy array's pickle uses, under numpy 1 and 2 module names."""
    import numpy as np

    reconstruct, scalar, frombuffer = _numpy_rebuilders()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes under protocol 2
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _numpy_rebuilders() -> tuple[Any, Any, Any]:
    try:  # numpy 2 (importing numpy.core there warns)
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _reconstruct, scalar, _frombuffer
