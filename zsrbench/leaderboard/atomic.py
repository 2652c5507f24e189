"""Write primitives that leave nothing half-done: a file, a set of files or a folder appears complete or not at all.

Every function here removes what it created when an ``OSError`` occurs (hidden temporary files and folders, new
folders, files it had already put in place; a replaced file gets its old content back) and re-raises the error;
:func:`user_error` turns it into a :class:`ZsrError` that names the path, the cause and what to do. Paths that
could not be removed again are listed on the error (``exc.leftovers``) and named in that message.

Temporary names start with ``.`` and contain ``.tmp`` (:func:`is_temp_name`); ``zsrbench validate`` reports any it
finds as leftovers of an interrupted write (a crash, a kill).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError

OLD_TAG = "tmp-old"  # the previous content of a file being replaced, kept until the new one is in place
TEMP_NAME_RE = re.compile(r"^\..*\.tmp")
NAME_MAX = 255  # bytes per file or folder name on the usual filesystems

# errno -> (the cause in words, what to do; {option} is the command-line option that chooses the folder)
CAUSES = {
    errno.ENOSPC: ("the disk is full (no space left on device)",
                   "Free some space on that disk (or choose a folder on another disk with {option})"),
    errno.EDQUOT: ("the disk quota is exceeded",
                   "Free some space within your quota (or choose a folder on another disk with {option})"),
    errno.EACCES: ("permission denied", "Make the folder writable for you (or choose another one with {option})"),
    errno.EPERM: ("permission denied (operation not permitted)",
                  "Make the folder writable for you (or choose another one with {option})"),
    errno.EROFS: ("the filesystem is read-only", "Choose a folder on a writable filesystem with {option}"),
    errno.ENAMETOOLONG: ("a file or folder name in the path is too long (most filesystems allow 255 bytes per name)",
                         "Choose a shorter path with {option}"),
}


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a hidden temporary name as written here (``.<name>.<pid>.tmp``, ``.rNNNN.tmp-<pid>``)."""
    return bool(TEMP_NAME_RE.match(name))


def temp_path(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


def cause(exc: OSError) -> tuple[str, str]:
    """The cause of ``exc`` in words and what to do about it (``{option}`` left to fill in)."""
    if exc.errno in CAUSES:
        return CAUSES[exc.errno]
    return (exc.strerror or str(exc)), "Check that folder (or choose another one with {option})"


def user_error(path: Path | str, exc: OSError, *, kept: str, option: str, verb: str = "write") -> ZsrError:
    """A :class:`ZsrError` for a failed write of ``path``: the cause, what was kept (``kept``, a clause), whether
    anything was left behind, and what to do."""
    what, fix = cause(exc)
    left = [str(p) for p in getattr(exc, "leftovers", [])]
    if verb != "write":
        tail = "."
    elif left:
        tail = f". Could not remove {', '.join(left)} again; delete {'it' if len(left) == 1 else 'them'}."
    else:
        tail = "; no partial or temporary file was left."
    return ZsrError(f"Cannot {verb} {path}: {what}. {kept}{tail} {fix.format(option=option)}, then run the command "
                    "again.")


def probe(path: Path, *, option: str, what: str = "folder") -> bool:
    """``path.is_dir()`` (``what="folder"``) or ``path.exists()``, with an unusable path (a name too long, no
    permission to look) reported as a :class:`ZsrError` instead of an ``OSError``."""
    try:
        if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):  # ENOENT would hide it
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise user_error(path, exc, kept="Nothing was read or written", option=option, verb="read") from exc
    return stat.S_ISDIR(st.st_mode) if what == "folder" else True


# ---------------------------------------------------------------------------------------------------- cleanup
def _remove(path: Path) -> bool:
    """Remove a file or a folder tree; whether it is gone."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)
    return True


def _cleanup(exc: OSError, *paths: Path) -> None:
    """Remove ``paths``; those that stay are added to ``exc.leftovers``."""
    left = [p for p in paths if not _remove(p)]
    if left:
        exc.leftovers = [*getattr(exc, "leftovers", []), *left]  # type: ignore[attr-defined]


def make_dirs(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True, exist_ok=True)``, returning the folders it created (outermost first)."""
    missing = []
    d = folder
    while not os.path.isdir(d):
        if os.path.lexists(d) or d.parent == d:
            break  # a file in the way (mkdir says so below) or no existing ancestor
        missing.append(d)
        d = d.parent
    missing.reverse()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        remove_empty(missing)  # those made before the one that failed
        raise
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove those of ``folders`` (as returned by :func:`make_dirs`) that are empty, innermost first."""
    for d in reversed(folders):
        try:
            d.rmdir()  # never removes a folder that is not empty
        except OSError:
            continue  # never made, or something else is in it


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk where the platform allows it (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------- writing
def _create(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, flushed to disk; removed again on an OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _cleanup(exc, path)
        raise


def _stage(path: Path, data: bytes) -> Path:
    tmp = temp_path(path)
    _remove(tmp)  # a stale one of an earlier process with this pid
    _create(tmp, data)
    return tmp


def _keep_old(path: Path) -> Path | None:
    """A second name for the file at ``path`` (None: there is none), so that replacing it can be undone."""
    old = temp_path(path, OLD_TAG)
    _remove(old)
    try:
        os.link(path, old)
    except FileNotFoundError:
        return None
    except OSError:  # no hard links here: move it aside (and back on failure)
        try:
            os.rename(path, old)
        except FileNotFoundError:
            return None
    return old


def _put_back(exc: OSError, path: Path, old: Path | None) -> None:
    """Undo the replacement of ``path`` (``old``: its previous content, None: it did not exist)."""
    try:
        if old is None:
            os.unlink(path)
        else:
            os.replace(old, path)
    except OSError:
        exc.leftovers = [*getattr(exc, "leftovers", []), old or path]  # type: ignore[attr-defined]


def _swap_in(pairs: Sequence[tuple[Path, Path]]) -> None:
    """``os.replace`` each staged file onto its target; after an OSError the targets replaced so far are put back."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, path in pairs:
            old = _keep_old(path)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                if old is not None and os.path.lexists(path):
                    _cleanup(exc, old)  # a second name of the unchanged file
                elif old is not None:
                    _put_back(exc, path, old)  # it was moved aside: move it back
                raise
            done.append((path, old))
    except OSError as exc:
        for path, old in reversed(done):
            _put_back(exc, path, old)
        raise
    for _, old in done:
        if old is not None:
            _remove(old)


def replace_files(items: Sequence[tuple[Path, bytes]]) -> None:
    """Put each ``data`` at its ``path`` (creating folders, replacing what is there), all or nothing.

    Each file is first written whole, and flushed, under a hidden temporary name next to its target; then all
    are renamed into place. After an OSError every target holds what it held before (or still does not exist),
    the folders created are gone and no temporary file is left; the error is re-raised.
    """
    created: list[Path] = []
    staged: list[Path] = []
    try:
        for path, _ in items:
            created += make_dirs(path.parent)
        for path, data in items:
            staged.append(_stage(path, data))
        _swap_in(list(zip(staged, [p for p, _ in items])))
    except OSError as exc:
        _cleanup(exc, *staged)
        remove_empty(created)
        raise
    for d in {p.parent for p, _ in items}:
        _fsync_dir(d)


def write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Create ``folder`` (it must not exist) holding ``files``: written into a hidden temporary folder next to it,
    then renamed. After an OSError neither exists and the error is re-raised."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        tmp.mkdir()
        for name, blob in files.items():
            _create(tmp / name, blob)
        _fsync_dir(tmp)
        os.rename(tmp, folder)
    except OSError as exc:
        _cleanup(exc, tmp)
        raise
    _fsync_dir(folder.parent)


def write_revision(folder: Path, files: dict[str, bytes], entry_file: Path, entry_blob: bytes) -> None:
    """A revision's files (into ``folder``, when there are any) and then its entry file: both appear or neither.

    If the entry file cannot be written, the folder written just before is removed again.
    """
    if files:
        write_folder(folder, files)
    try:
        replace_files([(entry_file, entry_blob)])
    except OSError as exc:
        if files:
            _cleanup(exc, folder)
        raise
