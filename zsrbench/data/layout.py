"""Errors and path checks for datasets read from a local data root.

A dataset that is not there raises :class:`DataMissingError`; one that is there but not in the expected layout
(a missing metadata file, a wrong number of classes, an unreadable image) raises :class:`DataLayoutError`.
Both are :class:`~zsrbench.errors.ZsrError` s whose message names the path that was expected, what was found
instead and how to obtain the data.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from zsrbench.errors import ZsrError


class DataError(ZsrError):
    """A data error, built from its message alone.

    PyTorch re-raises an error of a DataLoader worker as ``type(exc)(text)``, where ``text`` wraps the message in
    "Caught ... Original Traceback ..."; the constructor keeps only the original message, so the CLI still prints
    one paragraph.
    """

    def __init__(self, text: str = "") -> None:
        super().__init__(unwrap_worker_text(text))


class DataMissingError(DataError):
    """The dataset's folder (or the data root itself) does not exist."""


class DataLayoutError(DataError):
    """The dataset's folder exists but does not hold the files, classes or images expected."""


class BrokenImageError(DataLayoutError):
    """An image file that cannot be decoded (unreadable, truncated or missing); ``path`` names it when known."""

    path: str | None = None


def unwrap_worker_text(text: str) -> str:
    """The original message inside the text of an error PyTorch re-raised from a DataLoader worker."""
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    _, sep, message = text.rstrip().splitlines()[-1].partition(": ")
    return message if sep else text


def found_instead(expected: Path, max_entries: int = 8) -> str:
    """What is on disk where ``expected`` was looked for: its nearest existing ancestor and what it holds."""
    if expected.exists():
        return f"{expected} is {'a folder' if expected.is_dir() else 'a file'}"
    parent = expected.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.exists():
        return f"nothing at {expected} or any folder above it"
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    entries = sorted(parent.iterdir(), key=lambda p: p.name)
    missing_child = expected.relative_to(parent).parts[0]
    text = f"{parent} holds {_listing(entries, max_entries)} (no '{missing_child}')"
    close = difflib.get_close_matches(missing_child.lower(), [e.name.lower() for e in entries], n=1, cutoff=0.75)
    if close:
        match = next(e for e in entries if e.name.lower() == close[0])
        text += f"; if {match} is this data under another name, rename or link it to {parent / missing_child}"
    return text


def _listing(entries: list[Path], max_entries: int) -> str:
    if not entries:
        return "nothing (empty folder)"
    names = [e.name + ("/" if e.is_dir() else "") for e in entries[:max_entries]]
    more = f" and {len(entries) - max_entries} more" if len(entries) > max_entries else ""
    return ", ".join(names) + more


def missing_message(title: str, expected: Path, how_to_obtain: str, problem: str = "not found") -> str:
    return (
        f"{title} {problem}: expected {expected}; found instead: {found_instead(expected)}. "
        f"How to obtain it: {how_to_obtain}"
    )


def data_root(root: str | Path | None, title: str, how_to_obtain: str) -> Path:
    """The data root as a Path; a missing root is a :class:`DataMissingError`."""
    if root is None or str(root) == "":
        raise DataMissingError(
            f"{title} is read from a local data root, but none was given. Pass --data-root DIR (the folder that "
            f"holds the datasets). How to obtain it: {how_to_obtain}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataMissingError(missing_message(title, path, how_to_obtain, problem="data root not found"))
    return path


def require_folder(folder: Path, title: str, how_to_obtain: str) -> Path:
    """``folder`` must be a directory: the dataset's own folder under the data root."""
    if not folder.is_dir():
        raise DataMissingError(missing_message(title, folder, how_to_obtain))
    return folder


def require_paths(paths: list[Path], title: str, how_to_obtain: str) -> None:
    """Every path must exist; the dataset folder is there, so a missing one means a wrong or partial layout."""
    for path in paths:
        if not path.exists():
            raise DataLayoutError(missing_message(title, path, how_to_obtain, problem="has an incomplete layout"))


def layout_error(title: str, where: Path, problem: str, how_to_obtain: str) -> DataLayoutError:
    """A wrong layout at ``where``: the problem, what ``where`` holds, and how to obtain the data."""
    found = ""
    if where.is_dir():
        found = f"; {where} holds " + _listing(sorted(where.iterdir(), key=lambda p: p.name), 8)
    return DataLayoutError(f"{title}: {problem} (in {where}){found}. How to obtain it: {how_to_obtain}")


def first_existing(root: Path, names: tuple[str, ...]) -> Path:
    """``root/name`` for the first of ``names`` that exists, else ``root/names[0]`` (the one to name in errors)."""
    for name in names:
        if (root / name).exists():
            return root / name
    return root / names[0]
