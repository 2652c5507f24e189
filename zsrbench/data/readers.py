"""Small readers for on-disk layouts that torchvision cannot read here, and the datasets they return.

torchvision's CIFAR, STL-10 and Flowers102 classes verify md5 sums of every file (for STL-10 also the 2.5 GB
train/unlabeled files the test split does not need), so they refuse any copy that is not byte-identical to the
original download; these readers read the same files in the same way without that check. Tiny-ImageNet and the
ImageNet val folder have no torchvision class that reads them as they are.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
Transform = Callable[[Image.Image], Any]


class FileListDataset(Dataset):
    """Images listed by path, with integer labels: ``dataset[i] = (transform(PIL image), label)``."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], transform: Transform) -> None:
        if len(files) != len(labels):
            raise ValueError("files and labels differ in length")
        self.files = [Path(f) for f in files]
        self.labels = [int(y) for y in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        with Image.open(self.files[i]) as im:
            image = im.convert("RGB")
        return self.transform(image), self.labels[i]


class ArrayImageDataset(Dataset):
    """Images in a uint8 array N×H×W×C (in memory or a lazily opened memmap), with integer labels."""

    def __init__(
        self, images: np.ndarray | Callable[[], np.ndarray], labels: Sequence[int], transform: Transform
    ) -> None:
        self._images = images if isinstance(images, np.ndarray) else None
        self._open = None if isinstance(images, np.ndarray) else images
        self.labels = [int(y) for y in labels]
        self.transform = transform

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            assert self._open is not None
            self._images = self._open()
        return self._images

    def __getstate__(self) -> dict[str, Any]:  # a memmap is re-opened in each worker, not pickled whole
        state = self.__dict__.copy()
        if self._open is not None:
            state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(Image.fromarray(np.ascontiguousarray(self.images[i]))), self.labels[i]


class IntLabels(Dataset):
    """Wraps a dataset so that labels are Python ints (torchvision returns numpy ints for some datasets)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image, label = self.base[i]
        return image, int(label)


# --- CIFAR -------------------------------------------------------------------------------------------------


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def cifar_arrays(batch: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """A CIFAR python batch -> (N×32×32×3 uint8 images, labels); CIFAR-100 batches label with ``fine_labels``."""
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = batch["labels"] if "labels" in batch else batch["fine_labels"]
    return np.ascontiguousarray(data), [int(y) for y in labels]


# --- STL-10 ------------------------------------------------------------------------------------------------

STL10_SIDE = 96
STL10_BYTES = 3 * STL10_SIDE * STL10_SIDE


def stl10_count(x_path: Path) -> int:
    size = os.path.getsize(x_path)
    if size % STL10_BYTES:
        raise ValueError(f"{x_path} has {size} bytes, not a multiple of {STL10_BYTES} (3×96×96)")
    return size // STL10_BYTES


def stl10_opener(x_path: Path) -> Callable[[], np.ndarray]:
    """Opens ``*_X.bin`` as N×96×96×3: the file stores each image as 3×96×96 in column-major order."""

    def open_images() -> np.ndarray:
        raw = np.memmap(x_path, dtype=np.uint8, mode="r").reshape(-1, 3, STL10_SIDE, STL10_SIDE)
        return raw.transpose(0, 3, 2, 1)

    return open_images


def stl10_labels(y_path: Path) -> list[int]:
    return [int(y) - 1 for y in np.fromfile(y_path, dtype=np.uint8)]


# --- image folders ------------------------------------------------------------------------------------------


def images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files under ``folder``, sorted by path."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def class_folders(folder: Path, exclude: Sequence[str] = ()) -> list[str]:
    """Sub-folder names, sorted as torchvision's ImageFolder sorts them."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name not in exclude)


def folder_samples(folder: Path, classes: Sequence[str], recursive: bool = False) -> tuple[list[Path], list[int]]:
    """(files, labels) of the class folders ``folder/<class>``, label = position in ``classes``."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = images_in(folder / name, recursive=recursive)
        files += found
        labels += [label] * len(found)
    return files, labels


# --- Tiny-ImageNet -----------------------------------------------------------------------------------------


def read_val_annotations(path: Path) -> list[tuple[str, str]]:
    """``val_annotations.txt`` -> [(file name, wnid)] (columns: file, wnid, bounding box)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                rows.append((parts[0], parts[1]))
    return rows


# --- Flowers102 and Stanford Cars (.mat) -------------------------------------------------------------------


def loadmat(path: Path) -> dict[str, Any]:
    try:
        from scipy.io import loadmat as _loadmat
    except ImportError as exc:  # pragma: no cover - scipy is a dependency
        from zsrbench.errors import ZsrError

        raise ZsrError(f"Reading {path} needs scipy: pip install scipy") from exc
    return _loadmat(str(path), squeeze_me=True)


def flowers102_split(setid: Path, imagelabels: Path, split_key: str) -> tuple[list[int], list[int]]:
    """(image ids, 0-based labels) of one split of Flowers102 (``setid.mat`` keys trnid/valid/tstid)."""
    ids = np.atleast_1d(loadmat(setid)[split_key]).astype(int).tolist()
    all_labels = np.atleast_1d(loadmat(imagelabels)["labels"]).astype(int)
    return ids, [int(all_labels[i - 1]) - 1 for i in ids]


def cars_annos(path: Path, test: bool) -> tuple[list[str], list[int], list[str]]:
    """``cars_annos.mat`` (all images in one file) -> (relative paths, 0-based labels, class names) of a split."""
    mat = loadmat(path)
    rel, labels = [], []
    for ann in np.atleast_1d(mat["annotations"]):
        if bool(int(ann["test"])) == test:
            rel.append(str(ann["relative_im_path"]))
            labels.append(int(ann["class"]) - 1)
    return rel, labels, [str(c) for c in np.atleast_1d(mat["class_names"]).tolist()]
