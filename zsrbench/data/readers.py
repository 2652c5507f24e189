"""Small readers for on-disk layouts that torchvision cannot read here, and the datasets they return.

torchvision's CIFAR, STL-10 and Flowers102 classes verify md5 sums of every file (for STL-10 also the 2.5 GB
train/unlabeled files the test split does not need), so they refuse any copy that is not byte-identical to the
original download; these readers read the same files in the same way without that check. Tiny-ImageNet and the
ImageNet val folder have no torchvision class that reads them as they are.

Every image file is decoded in full when it is read (:func:`decode_image`): one that cannot be decoded, is
truncated or is missing raises :class:`~zsrbench.data.layout.BrokenImageError` naming the file, also for the
torchvision datasets (:class:`IntLabels`). PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is kept off, so a
truncated file is an error, never an image padded with grey. :func:`broken_images` decodes every image of a
dataset once; :func:`without_broken` leaves the broken ones out (``--skip-broken-images``). CIFAR's pickles
are read with the restricted unpickler of :mod:`zsrbench.data.safe_pickle`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageFile
from torch.utils.data import Dataset, Subset

from zsrbench.data import safe_pickle
from zsrbench.data.layout import BrokenImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
Transform = Callable[[Image.Image], Any]
# What PIL raises for a file it cannot decode (UnidentifiedImageError and "image file is truncated" are OSErrors).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


# --- optional dependencies ---------------------------------------------------------------------------------

TGA16_EXTRA = 'pip install "zsrbench[tga16]"'


def optional_module(name: str, purpose: str, *, package: str | None = None) -> Any:
    """``import name`` for a package only some tga16 datasets need (h5py for PCAM, gdown for PCAM's download,
    scipy.io for the .mat files of Flowers102 and Stanford Cars), imported when first used: when it is missing,
    a :class:`ZsrError` that says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        from zsrbench.errors import ZsrError

        pkg = package or name.split(".")[0]
        raise ZsrError(
            f"{purpose} needs the Python package {pkg}, which is not installed (or does not import: {exc}). It is "
            f"one of the optional dependencies of the tga16 datasets: install them with {TGA16_EXTRA} (or just "
            f"pip install {pkg}) and run the command again; nothing was read or written.") from exc


def require_h5py(what: str = "PCAM") -> Any:
    """h5py, for datasets stored as HDF5 files (PCAM)."""
    return optional_module("h5py", f"Reading {what} (HDF5 files)")


def require_gdown(what: str = "PCAM") -> Any:
    """gdown, which torchvision uses to download files from Google Drive (PCAM with --download)."""
    return optional_module("gdown", f"Downloading {what} (torchvision fetches it from Google Drive)")


# --- decoding ------------------------------------------------------------------------------------------------


def decode_image(path: Path, index: int | None = None) -> Image.Image:
    """The image at ``path``, fully decoded, in RGB; a file that cannot be decoded raises BrokenImageError."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, whatever else turned this on
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except DECODE_ERRORS as exc:
        raise broken_image(path, exc, index) from exc


def broken_image(path: Path, exc: BaseException, index: int | None = None) -> BrokenImageError:
    """The error for an image file that cannot be read: the file, why, and what to do."""
    reason = "the file is missing" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
    which = "the image" if index is None else f"image {index} of the dataset"
    err = BrokenImageError(
        f"{path}: cannot read {which} ({reason}). The file is broken, truncated or missing: re-copy or "
        "re-download it, or pass --skip-broken-images to zsrbench run to leave it out (the files left out are "
        "recorded with the results).")
    err.path = str(path)
    return err


def is_decodable(path: Path) -> bool:
    try:
        decode_image(path)
    except BrokenImageError:
        return False
    return True


def image_files(dataset: Dataset) -> list[Path] | None:
    """The image file of each item of ``dataset``, or None for datasets held in arrays (CIFAR, STL-10, PCAM)."""
    if isinstance(dataset, FileListDataset):
        return list(dataset.files)
    if isinstance(dataset, IntLabels) and len(dataset) and tv_image_path(dataset.base, 0) is not None:
        return [tv_image_path(dataset.base, i) for i in range(len(dataset))]  # type: ignore[misc]
    return None


def broken_images(dataset: Dataset) -> list[tuple[int, str]]:
    """(index, file) of each image of ``dataset`` that cannot be decoded: decodes every image file once."""
    return [(i, str(f)) for i, f in enumerate(image_files(dataset) or []) if not is_decodable(f)]


def without_broken(dataset: Dataset) -> tuple[Dataset, tuple[str, ...]]:
    """``dataset`` without its broken images (decodes every image once), and the files left out."""
    broken = broken_images(dataset)
    if not broken:
        return dataset, ()
    bad = {i for i, _ in broken}
    keep = [i for i in range(len(dataset)) if i not in bad]  # type: ignore[arg-type]
    return Subset(dataset, keep), tuple(f for _, f in broken)


# --- datasets ------------------------------------------------------------------------------------------------


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
        return self.transform(decode_image(self.files[i], i)), self.labels[i]


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
    """Wraps a torchvision dataset: labels become Python ints (torchvision returns numpy ints for some datasets)
    and an image file that cannot be decoded raises BrokenImageError naming it."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        try:
            image, label = self.base[i]
        except DECODE_ERRORS:
            path = tv_image_path(self.base, i)
            if path is not None:
                decode_image(path, i)  # raises BrokenImageError when the file is what failed
            raise  # not the image file: the original error
        return image, int(label)


def tv_image_path(ds: Any, i: int) -> Path | None:
    """The image file of item ``i`` of a torchvision dataset, where its attributes tell (None otherwise)."""
    for attr in ("_image_files", "_images"):  # Food101, DTD, FGVCAircraft; OxfordIIITPet
        files = getattr(ds, attr, None)
        if isinstance(files, list) and 0 <= i < len(files):
            return Path(files[i])
    for attr in ("samples", "_samples"):  # ImageFolder (EuroSAT); StanfordCars
        samples = getattr(ds, attr, None)
        if isinstance(samples, list) and 0 <= i < len(samples):
            return Path(samples[i][0])
    return _caltech_path(ds, i)


def _caltech_path(ds: Any, i: int) -> Path | None:
    """The file torchvision's Caltech101 / Caltech256 ``__getitem__`` opens."""
    kind = type(ds).__name__
    if kind not in ("Caltech101", "Caltech256") or not 0 <= i < len(getattr(ds, "y", ())):
        return None
    y, k = ds.y[i], ds.index[i]
    if kind == "Caltech101":
        return Path(ds.root) / "101_ObjectCategories" / ds.categories[y] / f"image_{k:04d}.jpg"
    return Path(ds.root) / "256_ObjectCategories" / ds.categories[y] / f"{y + 1:03d}_{k:04d}.jpg"


# --- CIFAR -------------------------------------------------------------------------------------------------


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR python file (a pickled dict), read with the restricted unpickler of :mod:`safe_pickle`."""
    batch = safe_pickle.load(path, "a CIFAR file")
    if not isinstance(batch, dict):
        raise ValueError(f"{path} holds a {type(batch).__name__}, not the dict of a CIFAR file")
    return batch

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


def has_images(folder: Path, recursive: bool = False) -> bool:
    """Whether ``folder`` holds at least one image file (stops at the first)."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in it)


def empty_labels(labels: Sequence[int], n_classes: int) -> list[int]:
    """The labels of ``range(n_classes)`` that no item has."""
    return sorted(set(range(n_classes)) - set(labels))


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
    sio = optional_module("scipy.io", f"Reading {path} (a MATLAB .mat file)", package="scipy")
    return sio.loadmat(str(path), squeeze_me=True)


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
