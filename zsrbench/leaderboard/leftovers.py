"""Leftovers of interrupted writes in a leaderboard or results folder, for ``zsrbench validate``: hidden temporary
files and folders (``.*.tmp*``), revision folders without their entry file, flags sidecars without a record, empty
files; each with whether it can be deleted."""

from __future__ import annotations

from pathlib import Path

from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.entries import REV_DIR_RE, revision_files
from zsrbench.leaderboard.validate_records import raw_json

LEFTOVER = "the leftover of an interrupted write (a full disk, a crash or a kill)"
UNLESS_WRITING = "unless a zsrbench command is writing here right now"
SIDECAR_SUFFIX = ".flags.npz"


def referenced(edir: Path, cache: dict[Path, set[str]]) -> set[str]:
    """The file paths (relative to ``edir``) that the entry files in ``edir`` reference, read leniently (an entry
    file that does not parse references nothing; it is reported on its own)."""
    if edir not in cache:
        refs: set[str] = set()
        for _, f in revision_files(edir):
            data = raw_json(f)
            datasets = ((data or {}).get("measured") or {}).get("datasets") if isinstance(data, dict) else None
            for m in (datasets or {}).values() if isinstance(datasets, dict) else ():
                for k in ("record", "sidecar"):
                    ref = m.get(k) if isinstance(m, dict) else None
                    if isinstance(ref, dict) and isinstance(ref.get("path"), str):
                        refs.add(ref["path"])
        cache[edir] = refs
    return cache[edir]


def _revision_dir_problem(d: Path, refs: dict[Path, set[str]]) -> str | None:
    """Why an ``rNNNN/`` folder is a problem (None: its entry file exists)."""
    if (d.parent / f"{d.name}.json").exists():
        return None
    users = sorted({r.split("/")[0] for r in referenced(d.parent, refs)} & {d.name})
    if users:
        return (f"revision folder without its entry file {d.name}.json, but newer revisions reference files in "
                f"it: the entry file was deleted; restore {d.name}.json from version control (do not delete "
                "the folder)")
    return (f"revision folder without its entry file {d.name}.json: {LEFTOVER}. No entry references it; it can "
            f"be deleted ({UNLESS_WRITING})")


def _temp_problem(p: Path) -> str:
    if p.name.endswith(f".{atomic.OLD_TAG}"):
        target = p.name[1:].rsplit(".", 2)[0]
        return (f"the previous content of {target}, kept while an interrupted write replaced it: if {target} "
                f"exists, this file can be deleted; if not, rename it back to {target}")
    what = "folder" if p.is_dir() else "file"
    return f"a hidden temporary {what}: {LEFTOVER}; nothing references it and it can be deleted ({UNLESS_WRITING})"


def _orphan_sidecar(p: Path, refs: dict[Path, set[str]]) -> bool:
    """Whether the flags sidecar ``p`` has no record: no ``<name>.json`` beside it, no record beside it naming
    it, and (in a revision folder) no entry referencing it."""
    if (p.parent / (p.name[: -len(SIDECAR_SUFFIX)] + ".json")).exists():
        return False
    for q in p.parent.glob("*.json"):
        side = (raw_json(q) or {}).get("sidecar") if q.is_file() else None
        if isinstance(side, dict) and side.get("file") == p.name:
            return False
    return not (REV_DIR_RE.match(p.parent.name) and f"{p.parent.name}/{p.name}" in referenced(p.parent.parent, refs))


def leftover(p: Path, refs: dict[Path, set[str]]) -> str | None:
    """Why ``p`` is a leftover of an interrupted write, with what to do (None: it is not one)."""
    if atomic.is_temp_name(p.name):
        return _temp_problem(p)
    if p.name.startswith("."):
        return None
    if p.is_dir():
        return _revision_dir_problem(p, refs) if REV_DIR_RE.match(p.name) else None
    if p.suffix in (".json", ".npz") and p.is_file() and p.stat().st_size == 0:
        return (f"an empty file (0 bytes): {LEFTOVER} or a truncated file; it holds no data and can be deleted "
                "(restore it from version control instead if it was committed)")
    if p.name.endswith(SIDECAR_SUFFIX) and _orphan_sidecar(p, refs):
        return (f"flags sidecar without a record that names it: {LEFTOVER}; nothing references it and it can be "
                f"deleted ({UNLESS_WRITING})")
    return None

