"""What a tga16 dataset reader is given (:class:`Ctx`: the data root, the transform, whether to download, the
wording of its errors) and what it returns (:class:`Read`), with the checks of class folders and image lists
that several readers share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from torch.utils.data import Dataset

from zsrbench.data import readers as rd
from zsrbench.data.layout import (
    LAYOUTS,
    DataLayoutError,
    DataMissingError,
    layout_error,
    require_folder,
    require_paths,
)
from zsrbench.data.tga16_table import INFOS, SOURCES
from zsrbench.errors import ZsrError

T = TypeVar("T")


@dataclass
class Ctx:
    """What a reader needs: the data root, the transform, whether to download, and the error wording."""

    key: str
    root: Path
    transform: Callable[[Any], Any]
    download: bool
    split: str

    @property
    def title(self) -> str:
        return INFOS[self.key].title

    @property
    def how(self) -> str:
        return SOURCES[self.key].how_to_obtain

    def folder(self, rel: str | None = None) -> Path:
        return self.root / (rel or LAYOUTS[self.key].folder)

    def need_folder(self, folder: Path) -> Path:
        return require_folder(folder, self.title, self.how)

    def need(self, *paths: Path) -> None:
        require_paths(list(paths), self.title, self.how)

    def required(self) -> list[Path]:
        """The dataset's folder and the paths its layout requires (:data:`~zsrbench.data.layout.LAYOUTS`)."""
        return LAYOUTS[self.key].required_paths(self.root)

    def need_layout(self) -> Path:
        """The dataset's folder, after checking it and every required path of its layout."""
        folder, *paths = self.required()
        self.need_folder(folder)
        self.need(*paths)
        return folder

    def fetch_layout(self) -> None:
        """With ``download=True``, download the dataset through torchvision (:class:`Fetch`) unless it is there."""
        fetch = SOURCES[self.key].fetch
        if fetch is not None:
            self.fetch(self.folder(), self.required(), lambda: fetch.run(self.root))

    def error(self, where: Path, problem: str) -> DataLayoutError:
        return layout_error(self.title, where, problem, self.how)

    def fetch(self, folder: Path, needed: list[Path], download: Callable[[], object]) -> None:
        """With ``download=True``, run ``download`` (torchvision's) unless every ``needed`` path is there."""
        if self.download and not all(p.exists() for p in needed):
            self.call(folder, download)

    def call(self, where: Path, make: Callable[[], T]) -> T:
        """Run a torchvision constructor or download, turning its errors into ZsrErrors that say what to do."""
        try:
            return make()
        except ZsrError:
            raise
        except ImportError as exc:
            raise ZsrError(f"{self.title} needs a package that is not installed: {exc}") from exc
        except Exception as exc:  # torchvision raises RuntimeError, KeyError, ValueError, OSError
            doing = "downloading or reading" if self.download else "reading"
            problem = f"torchvision failed {doing} it: {type(exc).__name__}: {exc}"
            if not where.exists():  # e.g. a download that could not reach the server
                raise DataMissingError(f"{self.title}: {problem}; {where} does not exist. How to obtain it: "
                                       f"{self.how}") from exc
            raise self.error(where, problem) from exc


@dataclass
class Read:
    """What a reader returns: the dataset, its class names (in label order) and notes for ``EvalSet.extra``."""

    dataset: Dataset
    classnames: list[str]
    folder: Path
    extra: dict[str, Any]


def class_folder_samples(c: Ctx, folder: Path, classes: list[str], recursive: bool = False
                         ) -> tuple[list[Path], list[int]]:
    c.need(folder)
    missing = [name for name in classes if not (folder / name).is_dir()]
    if missing:
        raise c.error(folder, f"{len(missing)} of {len(classes)} class folders are missing, e.g. {missing[0]}/")
    require_filled(c, folder, classes, recursive=recursive)
    return rd.folder_samples(folder, classes, recursive=recursive)


def require_filled(c: Ctx, folder: Path, classes: list[str], recursive: bool = False) -> None:
    """Every class folder ``folder/<class>`` holds at least one image."""
    empty = [name for name in classes if not rd.has_images(folder / name, recursive=recursive)]
    if empty:
        raise c.error(folder, f"{len(empty)} of {len(classes)} class folders hold no images "
                              f"({some_names(empty, '/')}): the copy is partial; re-copy or re-extract these folders")


def some_names(names: list[str], suffix: str = "", n: int = 5) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(name + suffix for name in names[:n]) + more


def all_exist(c: Ctx, files: list[Path], where: Path) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise c.error(where, f"{len(missing)} of {len(files)} listed images are missing, e.g. {missing[0]}")

