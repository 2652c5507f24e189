"""Extracting an archive that no checksum vouches for, member by member.

torchvision extracts its archives with ``tarfile.extractall`` / ``zipfile.extractall`` and no filter. That is
safe for the archives whose md5 torchvision publishes and checks before extracting (``download_url`` with an
``md5``: an archive on disk that does not match is downloaded again), since they are the original archives. It
is not for the ones it publishes no checksum for (FGVC-Aircraft, Tiny-ImageNet): an archive of the expected name
that is already in the data root is extracted as it is, and a tar honours ``../`` names, absolute names, links
and device files. zsrbench therefore extracts those archives itself, with :func:`safe_extract`, before
torchvision looks (torchvision then finds the dataset's folder and extracts nothing; see
:class:`zsrbench.data.fetch.Fetch`).

:func:`safe_extract` accepts regular files and folders with plain relative names, nothing else: an absolute name,
a name with a ``..`` component, a symbolic or hard link, a device, a FIFO or any other kind of member is refused
(:class:`UnsafeArchiveError`, naming the member). It does not rely on ``tarfile``'s ``filter="data"`` (which
Python 3.10 before 3.10.12 and 3.11 before 3.11.4 lack, and whose link checks were bypassed on some later
releases), so it behaves the same on every Python zsrbench supports: it writes each file itself, into a fresh staging folder
beside the destination, and moves the archive's top-level entries into place only when every member is
extracted. A refusal, a damaged archive or an interruption removes the staging folder, so nothing is extracted;
an entry that already exists in the destination is never overwritten (refused before anything is written).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from zsrbench.errors import ZsrError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(ZsrError):
    """An archive holds a member that could write outside the folder it is extracted into (or a link, a device)."""


class ArchiveError(ZsrError):
    """An archive cannot be read or extracted (damaged, incomplete, of an unknown kind), or would overwrite a file."""


@dataclass(frozen=True)
class Member:
    """One entry of an archive: its name as stored, its kind (``file``, ``dir`` or what it is instead)."""

    name: str
    kind: str  # "file", "dir", or a description of a refused kind ("a symbolic link (to '/etc')")
    mtime: float | None
    executable: bool
    open: Callable[[], IO[bytes]] | None  # the data of a file


def archive_kind(path: Path) -> str:
    """``"tar"`` or ``"zip"``, by the file name as torchvision decides it, else by the content."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ArchiveError(f"{path} is neither a tar nor a zip archive; it is damaged or not the archive expected. "
                       "Delete it and run the command again, or fetch the archive by hand.")


def members(path: Path) -> Iterator[Member]:
    """The members of the tar or zip archive ``path``, in order, read lazily (a member's data while it is current)."""
    if archive_kind(path) == "zip":
        yield from _zip_members(path)
    else:
        yield from _tar_members(path)


TAR_MODES = {".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.bz2": "r:bz2", ".tbz": "r:bz2", ".tbz2": "r:bz2",
             ".tar.xz": "r:xz", ".txz": "r:xz", ".tar": "r:"}


def _tar_members(path: Path) -> Iterator[Member]:
    mode = next((m for suffix, m in TAR_MODES.items() if path.name.lower().endswith(suffix)), "r:*")
    with tarfile.open(path, mode) as tar:
        for m in tar:
            if m.isdir():
                kind = "dir"
            elif m.isreg():
                kind = "file"
            elif m.issym():
                kind = f"a symbolic link (to {m.linkname!r})"
            elif m.islnk():
                kind = f"a hard link (to {m.linkname!r})"
            elif m.ischr():
                kind = f"a character device ({m.devmajor}, {m.devminor})"
            elif m.isblk():
                kind = f"a block device ({m.devmajor}, {m.devminor})"
            elif m.isfifo():
                kind = "a FIFO (named pipe)"
            else:
                kind = f"an entry of tar type {m.type!r}"
            opener = (lambda m=m: tar.extractfile(m)) if kind == "file" else None
            yield Member(m.name, kind, float(m.mtime), bool(m.mode & 0o111), opener)  # type: ignore[arg-type]


_ZIP_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
              stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def _zip_members(path: Path) -> Iterator[Member]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16  # the Unix mode, where the archiver stored one
            fmt = stat.S_IFMT(mode)
            if info.flag_bits & 0x1:
                kind = "an encrypted file"
            elif fmt in _ZIP_KINDS:
                kind = _ZIP_KINDS[fmt]
                if fmt == stat.S_IFLNK and info.file_size < 4096:
                    kind += f" (to {zf.read(info).decode('utf-8', 'replace')!r})"
            elif info.is_dir() or fmt == stat.S_IFDIR:
                kind = "dir"
            elif fmt in (0, stat.S_IFREG):
                kind = "file"
            else:
                kind = f"an entry of Unix type {fmt:o}"
            try:
                mtime: float | None = time.mktime((*info.date_time, 0, 0, -1))
            except (OverflowError, ValueError):
                mtime = None
            opener = (lambda info=info: zf.open(info)) if kind == "file" else None
            yield Member(info.filename, kind, mtime, bool(mode & 0o111), opener)


def unsafe_reason(member: Member) -> str | None:
    """Why ``member`` may not be extracted (None: a regular file or a folder with a plain relative name)."""
    name = member.name
    if member.kind not in ("file", "dir"):
        return member.kind
    if not name or "\x00" in name:
        return "a member without a usable name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or os.path.isabs(name):
        return "an absolute name"
    if ".." in re.split(r"[/\\]", name):
        return "a name with a '..' component"
    if not _parts(name) and member.kind == "file":
        return "a file without a name"
    return None


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def check_archive(path: Path, *, source: str = "") -> int:
    """Read every member of ``path`` without extracting anything; the number of members.

    Raises :class:`UnsafeArchiveError` for the first member :func:`safe_extract` would refuse, and
    :class:`ArchiveError` when the archive cannot be read.
    """
    path = Path(path)
    count = 0
    try:
        for member in members(path):
            reason = unsafe_reason(member)
            if reason:
                raise _unsafe(path, member, reason, None, source)
            count += 1
    except ZsrError:
        raise
    except Exception as exc:  # tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, ...
        raise _damaged(path, exc, None, source) from exc
    return count


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself: no lock file is left behind), so that
    the ranks of ``zsrbench run --jobs N --download`` download and extract one archive once, one after the other.
    Where ``flock`` is not available the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def safe_extract(archive: Path, dest: Path, *, expect: str | None = None, source: str = "") -> list[str]:
    """Extract the tar or zip ``archive`` into the folder ``dest``, refusing any member that is not a regular file or
    a folder with a plain relative name; the names of the top-level entries put into ``dest``.

    Everything is extracted into a staging folder beside ``dest`` first (``.<archive>.zsrbench-extracting``; one left
    by an interrupted extraction is removed: callers that may run at the same time hold :func:`folder_lock`) and
    moved into place at the end; on a refusal (:class:`UnsafeArchiveError`), a damaged archive
    (:class:`ArchiveError`) or an interruption the staging folder is removed, so nothing is extracted. A top-level
    entry that already exists in ``dest`` is refused before it is written. ``expect``: the folder the archive must
    hold at its top (checked before anything is moved). ``source``: where the original archive comes from, for the
    messages.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".{archive.name}.zsrbench-extracting"
    _remove(staging)  # left by an interrupted extraction of the same archive
    staging.mkdir()
    try:
        _extract_into(archive, dest, staging, source)
        tops = sorted(os.listdir(staging))
        if expect is not None and not (staging / expect).is_dir():
            listed = ", ".join(tops[:5]) or "nothing"
            raise ArchiveError(f"{archive} holds no {expect}/ at its top (it holds {listed}): it is not the archive "
                               f"expected{_from(source)}. Nothing was extracted; delete it and run the command again.")
        for name in tops:
            if os.path.lexists(dest / name):
                raise _exists(archive, dest / name, source)
            os.rename(staging / name, dest / name)
    except BaseException:
        _remove(staging)
        raise
    _remove(staging)
    return tops


def _extract_into(archive: Path, dest: Path, staging: Path, source: str) -> None:
    seen_tops: set[str] = set()
    try:
        for member in members(archive):
            reason = unsafe_reason(member)
            if reason:
                raise _unsafe(archive, member, reason, dest, source)
            parts = _parts(member.name)
            if not parts:  # "./": the folder itself
                continue
            if parts[0] not in seen_tops:
                if os.path.lexists(dest / parts[0]):
                    raise _exists(archive, dest / parts[0], source)
                seen_tops.add(parts[0])
            target = staging.joinpath(*parts)
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(member, target)
    except ZsrError:
        raise
    except Exception as exc:  # tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, ...
        raise _damaged(archive, exc, dest, source) from exc


def _write(member: Member, target: Path) -> None:
    """Write a file member to ``target`` (never through a link: there are none in the staging folder, and
    ``O_NOFOLLOW`` makes sure)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(target, flags, 0o755 if member.executable else 0o644)
    with os.fdopen(fd, "wb") as out:
        assert member.open is not None
        src = member.open()
        if src is None:  # pragma: no cover - tarfile gives None only for non-files
            raise ArchiveError(f"cannot read {member.name!r}")
        with src:
            shutil.copyfileobj(src, out, 1 << 20)
    if member.mtime is not None:
        try:
            os.utime(target, (member.mtime, member.mtime))
        except (OSError, OverflowError, ValueError):
            pass


def _remove(path: Path) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _from(source: str) -> str:
    return f" (the original is {source})" if source else ""


def _unsafe(archive: Path, member: Member, reason: str, dest: Path | None, source: str) -> UnsafeArchiveError:
    where = f"outside {dest}" if dest is not None else "outside the folder it is extracted into"
    return UnsafeArchiveError(
        f"Refused to extract {archive}: its member {member.name!r} is {reason}, which could write {where} (zsrbench "
        "extracts regular files and folders with plain relative names only). Nothing was extracted. No checksum "
        f"vouches for this archive, so every member is checked: it is not the original archive{_from(source)}, or "
        "it was tampered with. Delete it (or replace it with the original) and run the command again.")


def _damaged(archive: Path, exc: BaseException, dest: Path | None, source: str) -> ArchiveError:
    into = f" into {dest}" if dest is not None else ""
    why = " ".join(str(exc).split())
    why = why if len(why) <= 200 else why[:200] + "…"
    return ArchiveError(
        f"Cannot extract {archive}{into} ({type(exc).__name__}: {why}): the archive is damaged or incomplete (an "
        "interrupted download?), or the disk is full. Nothing was extracted. Delete the archive and run the command "
        f"again, which downloads a fresh copy, or fetch it by hand{_from(source)}.")


def _exists(archive: Path, path: Path, source: str) -> ArchiveError:
    return ArchiveError(
        f"Extracting {archive} would overwrite {path}, which is already there; zsrbench never overwrites what is "
        "there. Nothing was extracted. Move it away and run the command again.")
