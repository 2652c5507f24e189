"""What a leaderboard table shows: the store's entries plus, for the protocols whose folder holds none, the
published numbers shipped with zsrbench (built in memory from its reported_data CSVs, never written)."""

from __future__ import annotations

from pathlib import Path

from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.entries import entry_dirs
from zsrbench.leaderboard.reading import AsOf, LoadedEntry, StoreView, _match, load_store
from zsrbench.leaderboard.reported import packaged_csv_dir, packaged_entries
from zsrbench.leaderboard.schema import LeaderboardEntry


def packaged_protocols(root: str | Path, protocol: str | None = None) -> list[str]:
    """The protocols whose shipped published numbers a table of the leaderboard at ``root`` shows in memory.

    A protocol qualifies when the folder holds no reported entries of it (none of any revision, withdrawn ones
    included: a folder that has them, like the checkout's, is used as it is) and the table is about it:
    ``protocol`` names it, or the folder has entries of it, or the folder has no entries at all (it is new or
    does not exist). So a folder of ``micro`` runs shows no ``tga16`` rows unless ``--protocol tga16`` asks.
    """
    root = Path(root)
    shipped = list(dict.fromkeys(e.protocol.name for e in packaged_entries()))
    dirs = entry_dirs(root) if atomic.probe(root, option="--leaderboard-dir") else []
    present = list(dict.fromkeys(d.parent.name for d in dirs))
    wanted = [protocol] if protocol else (present or shipped)
    has_reported = {d.parent.name for d in dirs if d.name.startswith("reported__")}
    return [p for p in wanted if p in shipped and p not in has_reported]


def packaged_loaded(protocols: list[str]) -> list[LoadedEntry]:
    """The shipped reported entries of ``protocols`` as loaded entries (no file: they live in memory), in the
    order :func:`load_store` reads a folder (by protocol, then entry name), so tables number sources alike."""

    entries = sorted((e for p in protocols for e in packaged_entries(p)), key=lambda e: (e.protocol.name, e.entry))
    return [LoadedEntry(e, packaged_csv_dir(), None, None) for e in entries]


def load_leaderboard(root: str | Path | None = None, protocol: str | None = None, as_of: AsOf | None = None, *,
                     reported: bool = True) -> StoreView:
    """What ``zsrbench table`` shows for the leaderboard at ``root`` (None: the default folder,
    :func:`zsrbench.paths.leaderboard_dir`).

    :func:`load_store`, plus (``reported``) the published numbers shipped with zsrbench for the protocols of
    :func:`packaged_protocols`, built in memory from the package's CSVs by the importer's own code and marked
    reported as usual; ``notes`` say when that happened. The default folder not existing yet is a leaderboard
    with no entries; a folder given that does not exist is an error (most likely a mistyped path).
    """
    from zsrbench import paths

    given = root is not None
    folder = Path(root) if given else paths.leaderboard_dir()
    if given or atomic.probe(folder, option="--leaderboard-dir"):
        view = load_store(folder, protocol, as_of)
    else:
        view = StoreView(notes=[f"no leaderboard at {folder} yet (`zsrbench run` adds its entries there; "
                                "--leaderboard-dir or $ZSRBENCH_HOME name another folder)"])
    if not reported:
        return view
    protocols = packaged_protocols(folder, protocol)
    extra = packaged_loaded(protocols)
    if extra:
        view.entries += extra
        names = ", ".join(protocols)
        why = f"{folder} holds no reported entries of {names}: " if folder.is_dir() else ""
        view.notes.append(f"{why}showing the published numbers shipped with zsrbench for {names} (built in memory "
                          "from its reported_data CSVs; nothing was written)")
    return view


def resolve_packaged(root: str | Path, name: str) -> LeaderboardEntry | None:
    """The shipped reported entry ``name`` names (as :func:`resolve_entry` matches names), among the protocols
    whose leaderboard folder at ``root`` holds no reported entries; None when ``name`` names none of them
    (several is an error listing them)."""

    base = name.split("@", 1)[0]
    folder = Path(root)
    dirs = entry_dirs(folder) if atomic.probe(folder, option="--leaderboard-dir") else []
    has_reported = {d.parent.name for d in dirs if d.name.startswith("reported__")}
    keys = {f"{e.protocol.name}/{e.entry}": e for e in packaged_entries() if e.protocol.name not in has_reported}
    if not any(base in (k, k.split("/", 1)[1]) or base.lower() in k.lower() for k in keys):
        return None
    return _match(base, keys, "among the published numbers shipped with zsrbench")
