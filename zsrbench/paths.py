"""Where zsrbench reads and writes by default: ``results/``, ``leaderboards/`` and its cache.

* :func:`home`: the base folder of ``results/`` and ``leaderboards/``: ``$ZSRBENCH_HOME``, else the current
  folder (relative paths stay relative, as they always were).
* :func:`results_dir`, :func:`leaderboard_dir`: ``<home>/results`` and ``<home>/leaderboards``. The command
  line's ``--results-dir`` / ``--leaderboard-dir`` override them.
* :func:`cache_dir`: text heads, downloaded checkpoints, defenses fine-tuned on demand: ``$ZSRBENCH_CACHE``,
  else ``$XDG_CACHE_HOME/zsrbench``, else ``~/.cache/zsrbench``.
* :func:`cache_roots`: every location on this machine that is (or by these rules could be) zsrbench's cache,
  for code that recognises cache folders in paths recorded elsewhere (``zsrbench migrate-paths``).

Everything is read from the environment when called, never at import time, so a test or a long-lived process
that changes the variables sees the change. This module imports nothing heavy (no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ZSRBENCH_HOME"
CACHE_ENV = "ZSRBENCH_CACHE"
XDG_CACHE_ENV = "XDG_CACHE_HOME"
RESULTS = "results"
LEADERBOARDS = "leaderboards"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def home() -> Path:
    """``$ZSRBENCH_HOME`` (``~`` expanded), else ``.``: the folder ``results/`` and ``leaderboards/`` are in."""
    value = _env(HOME_ENV)
    return Path(value).expanduser() if value else Path(".")


def results_dir() -> Path:
    """The default ``--results-dir``: ``<home>/results`` (``results`` when ``$ZSRBENCH_HOME`` is unset)."""
    return home() / RESULTS


def leaderboard_dir() -> Path:
    """The default ``--leaderboard-dir``: ``<home>/leaderboards`` (``leaderboards`` when unset)."""
    return home() / LEADERBOARDS


def _xdg_cache() -> Path | None:
    value = _env(XDG_CACHE_ENV)
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else None  # the XDG base directory spec says to ignore a relative value


def default_cache_dir() -> Path:
    """The cache without ``$ZSRBENCH_CACHE``: ``$XDG_CACHE_HOME/zsrbench``, else ``~/.cache/zsrbench``."""
    xdg = _xdg_cache()
    return (xdg if xdg is not None else Path.home() / ".cache") / "zsrbench"


def cache_dir() -> Path:
    """zsrbench's cache: ``$ZSRBENCH_CACHE``, else ``$XDG_CACHE_HOME/zsrbench``, else ``~/.cache/zsrbench``."""
    value = _env(CACHE_ENV)
    return Path(value).expanduser() if value else default_cache_dir()


def cache_roots() -> list[Path]:
    """The cache in use, then the other locations the rules above give on this machine (no duplicates)."""
    roots = [cache_dir(), default_cache_dir(), Path.home() / ".cache" / "zsrbench"]
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def portable_path(path: str | Path) -> str:
    """A machine-independent name for a file or folder, as result records store it.

    Inside zsrbench's cache (:func:`cache_dir`): ``cache:<path relative to the cache>`` (a folder fine-tuned on
    demand, a downloaded checkpoint); any other absolute path (or ``~/…``): its file or folder name only (the
    sha256 next to it identifies the file); a relative path as given. ``Defense.load`` accepts ``cache:…``.
    """
    text = str(path)
    if text.startswith("cache:"):
        return text
    p = Path(text).expanduser()
    try:
        return f"cache:{p.resolve().relative_to(cache_dir().resolve()).as_posix()}"
    except (ValueError, OSError):
        pass
    return p.name if (p.is_absolute() or text.startswith("~")) else text



def resolve_portable(text: str) -> str:
    """The local path a :func:`portable_path` ``cache:<path>`` name stands for (anything else unchanged)."""
    return str(cache_dir() / text.split(":", 1)[1]) if text.startswith("cache:") else text
