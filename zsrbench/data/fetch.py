"""How one tga16 dataset is downloaded: :class:`Fetch`, torchvision's dataset class with its own checks, or an
archive without a published checksum that zsrbench downloads and extracts itself, refusing unsafe members
(:mod:`zsrbench.data.archives`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from zsrbench.errors import ZsrError


@dataclass(frozen=True)
class Fetch:
    """How torchvision downloads a dataset.

    ``torchvision.datasets.<cls>(root, download=True, **kwargs)``, which verifies the archive's published md5
    where torchvision has one (``md5_checked``); or, where torchvision has no class for the dataset, the archive
    at ``url``. An archive without a published md5 is never extracted by torchvision: zsrbench downloads it (unless
    an archive of that name is already in the data root) and extracts it member by member
    (:func:`zsrbench.data.archives.safe_extract`) into ``folder``, where the class then finds it and extracts
    nothing. ``unchecked_leftovers``: a folder whose archives the class extracts without a checksum when it is
    there before the download; they are checked member by member first.
    """

    cls: str = ""
    kwargs: tuple[tuple[str, Any], ...] = ()
    url: str = ""
    md5_checked: bool = True
    needs: str = ""  # a package the download needs beyond torchvision
    folder: str = ""  # the folder (relative to the data root) an archive without a checksum holds
    unchecked_leftovers: str = ""

    def archive_url(self) -> str:
        """The archive's url: torchvision's own where its class names one (the name it looks for), else ``url``."""
        if self.cls:
            import torchvision.datasets as tvd

            found = getattr(getattr(tvd, self.cls, None), "_URL", None)
            if isinstance(found, str) and found:
                return found
        return self.url

    def run(self, root: Path) -> object:
        """Download into the data root ``root`` (the class's own checks decide whether anything is fetched)."""
        import torchvision.datasets as tvd

        root = Path(root)
        if not self.md5_checked:
            self.extract_unchecked(root)
        if self.unchecked_leftovers:
            self.check_leftovers(root)
        if self.cls:
            return getattr(tvd, self.cls)(str(root), download=True, **dict(self.kwargs))
        return root / self.folder

    def extract_unchecked(self, root: Path) -> None:
        """Download the archive (unless it is there) and extract it safely into ``root``; nothing when its folder is
        already there (torchvision then extracts nothing either)."""
        from zsrbench.data.archives import folder_lock, safe_extract

        if (root / self.folder).is_dir():
            return
        root.mkdir(parents=True, exist_ok=True)
        url = self.archive_url()
        archive = root / Path(urlparse(url).path).name
        with folder_lock(root):  # the ranks of run --jobs N --download: one downloads and extracts, the others wait
            if (root / self.folder).is_dir():
                return
            if not os.path.lexists(archive):
                from torchvision.datasets import utils as tvu

                tvu.download_url(url, str(root), archive.name)  # no md5 to check: downloads, extracts nothing
            elif not archive.is_file():
                raise ZsrError(f"{archive} is not a file: zsrbench expected the archive {archive.name} there (or "
                               f"nothing, to download it from {url}). Move it away and run the command again.")
            safe_extract(archive, root, expect=self.folder, source=url)

    def check_leftovers(self, root: Path) -> None:
        """Check every member of each tar archive in ``unchecked_leftovers`` (an UnsafeArchiveError names the first
        refused one); a ``.gz`` that is not a tar is decompressed by torchvision, not extracted."""
        from zsrbench.data.archives import ArchiveError, check_archive

        folder = root / self.unchecked_leftovers
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if path.name.endswith(".gz") and path.is_file():
                try:
                    check_archive(path)
                except ArchiveError:  # not a tar, or damaged: torchvision decompresses it or fails on it
                    pass

    def describe(self) -> str:
        if self.cls:
            args = ", ".join(["root", "download=True"] + [f"{k}={v!r}" for k, v in self.kwargs])
            what = f"torchvision.datasets.{self.cls}({args})"
        else:
            what = f"{self.url} (torchvision's download utility)"
        checked = ("md5 checked" if self.md5_checked
                   else "no published checksum: zsrbench extracts the archive itself, refusing unsafe members")
        return f"{what}; {checked}" + (f"; needs {self.needs}" if self.needs else "")
