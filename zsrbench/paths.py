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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class OutputDirProblem:
    """Why a folder cannot be written into: ``kind`` is ``name`` (one name longer than ``limit``), ``path`` (the
    whole path, ``size`` bytes, too close to ``limit``), ``file`` (the path or an ancestor is a file) or
    ``unwritable``; ``probe`` is its nearest existing ancestor."""

    kind: str
    path: Path
    probe: Path
    name: str = ""
    limit: int = 0
    size: int = 0


def output_dir_problem(path: str | Path) -> OutputDirProblem | None:
    """What stops ``path`` from being (made) a writable folder, checked without writing; None when nothing does."""
    p = Path(path).expanduser().absolute()
    probe = _nearest_existing(p)
    try:
        longest = int(os.pathconf(probe, "PC_NAME_MAX"))
    except (OSError, ValueError):
        longest = 255
    long_names = [part for part in p.parts if len(os.fsencode(part)) > longest]
    if long_names:
        return OutputDirProblem("name", p, probe, name=long_names[0], limit=longest)
    try:
        path_max = int(os.pathconf(probe, "PC_PATH_MAX"))
    except (OSError, ValueError):
        path_max = 4096
    size = len(os.fsencode(str(p)))
    if size + longest >= path_max:  # the files written inside need room too
        return OutputDirProblem("path", p, probe, limit=path_max, size=size)
    if not probe.is_dir():
        return OutputDirProblem("file", p, probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        return OutputDirProblem("unwritable", p, probe)
    return None


def check_output_dir(path: str | Path, flag: str, what: str) -> Path | None:
    """``path`` is (or can be made) a writable folder (:func:`output_dir_problem`), checked before anything runs,
    so a long evaluation never ends in an unwritable folder; a :class:`ZsrError` naming ``what`` and ``flag``
    otherwise. Returns the topmost folder that writing into ``path`` creates (None: it exists)."""
    from zsrbench.errors import ZsrError

    bad = output_dir_problem(path)
    p = Path(path).expanduser().absolute()
    if bad is None:
        probe = _nearest_existing(p)
        return None if probe == p else probe / p.relative_to(probe).parts[0]
    if bad.kind == "name":
        raise ZsrError(f"{what} {p}: the name '{bad.name[:40]}…' is too long ({len(bad.name)} characters; this "
                       f"filesystem allows {bad.limit}). Choose a shorter path with {flag}.")
    if bad.kind == "path":
        raise ZsrError(f"{what} {p}: the path is too long ({bad.size} bytes; this filesystem allows {bad.limit - 1} "
                       f"for a whole path, and the files inside need room). Choose a shorter path with {flag}.")
    if bad.kind == "file" and bad.probe == p:
        raise ZsrError(f"{what} {p} is a file, not a folder. Choose another with {flag}.")
    raise ZsrError(f"{what} {p} is not writable (under {bad.probe}). Choose another with {flag}.")


def _nearest_existing(p: Path) -> Path:
    """``p`` or its closest ancestor that exists."""
    while p.parent != p:
        try:
            if p.exists():
                return p
        except OSError:  # e.g. a name too long to look up
            pass
        p = p.parent
    return p
