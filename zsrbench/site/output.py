"""The site's output folder: which folders may be written, and writing all of it or nothing.

A folder ``zsrbench site`` made holds the marker file :data:`MARKER`. The site goes into a new folder, an empty
one, or one with the marker (replaced as a whole); any other folder is refused, as is a folder that holds the
leaderboard or lies inside it. The new site is written into a hidden folder next to the target and swapped in
only when complete: if anything fails, the folder is as it was before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import zsrbench
from zsrbench.errors import ZsrError

MARKER = ".zsrbench-site"
MADE_BY = "zsrbench site"


def marker_text() -> str:
    return json.dumps({"made_by": MADE_BY, "zsrbench_version": zsrbench.__version__,
                       "note": "this folder is replaced as a whole by the next `zsrbench site`"}, indent=2) + "\n"


def is_site(folder: Path) -> bool:
    """``folder`` holds the marker of a site ``zsrbench site`` made."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("made_by") == MADE_BY


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it."""
    return a == b or b in a.parents


def check_target(out: str | Path, leaderboard: str | Path | None = None) -> Path:
    """The folder the site will replace (links resolved); a :class:`ZsrError` when it may not be written (a name
    or a whole path longer than the filesystem allows, under a file, not writable, not a site folder)."""
    from zsrbench.leaderboard.atomic import probe
    from zsrbench.paths import check_output_dir

    check_output_dir(out, "OUT (the site folder)", "Site folder")
    target = Path(os.path.realpath(Path(out).expanduser()))
    if probe(target, option="OUT (the site folder)", what="file") and not target.is_dir():
        raise ZsrError(f"{out} is a file, not a folder: pass the folder the site should go to (a new one, an empty "
                       "one, or one an earlier `zsrbench site` made). Nothing was written.")
    if leaderboard is not None:
        board = Path(os.path.realpath(Path(leaderboard).expanduser()))
        if _inside(target, board) or _inside(board, target):
            raise ZsrError(f"The site folder {out} and the leaderboard {leaderboard} overlap; the site is written "
                           "as a whole and must live apart from the leaderboard. Pass another folder, e.g. "
                           "`zsrbench site site/`. Nothing was written.")
    if target.is_dir() and any(target.iterdir()) and not is_site(target):
        raise ZsrError(f"{out} is not empty and was not made by `zsrbench site` (it has no {MARKER} file), so it "
                       "is left as it is. Pass a new or empty folder, or one an earlier `zsrbench site` wrote (that "
                       "one is replaced as a whole). Nothing was written.")
    return target


def write_files(stage: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (paths relative to the site's root) into the staging folder."""
    for rel, data in files.items():
        path = stage / rel
        if stage not in path.parents:  # a page name can never leave the site
            raise ValueError(f"page path {rel!r} leaves the site folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _failed(out: Path, exc: OSError) -> ZsrError:
    why = exc.strerror or str(exc)
    return ZsrError(f"Could not write the site to {out} ({why}{': ' + exc.filename if exc.filename else ''}). "
                    f"{out} is as it was before; check that its parent folder is writable and has free space.")


def _swap(stage: Path, target: Path) -> None:
    if not target.exists():
        os.rename(stage, target)
        return
    if any(target.iterdir()) and not is_site(target):  # something appeared since the check
        raise ZsrError(f"{target} changed while the site was built and is no longer a site folder; it is left as "
                       "it is. Run `zsrbench site` again with a new or empty folder.")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(stage, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A hidden folder next to ``target`` to write the site into; swapped in for ``target`` (with the marker)
    when the block ends without an error, removed when it raises."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    except OSError as exc:
        raise _failed(target, exc) from exc
    try:
        yield stage
        (stage / MARKER).write_text(marker_text(), encoding="utf-8")
        os.chmod(stage, 0o755)  # mkdtemp's folder is private; a published site is read by others
        _swap(stage, target)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise _failed(target, exc) from exc
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
