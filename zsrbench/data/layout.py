"""Where the datasets lie under a data root, and the errors and path checks of reading them.

:data:`LAYOUTS` is the one table of each tga16 dataset's folder and the files its reader requires; the readers
(:mod:`zsrbench.data.tga16_readers`), ``zsrbench data prepare`` and the table of ``docs/data.md`` all read it.
:func:`dataset_root` resolves the ``--data-root`` option, which is either one folder for all datasets or a
template with ``{dataset}`` (one folder per dataset, e.g. ``/data/{dataset}``).

A dataset that is not there raises :class:`DataMissingError`; one that is there but not in the expected layout
(a missing metadata file, a wrong number of classes, an unreadable image) raises :class:`DataLayoutError`.
Both are :class:`~zsrbench.errors.ZsrError` s whose message names the path that was expected, what was found
instead and how to obtain the data.
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass
from pathlib import Path

from zsrbench.errors import ZsrError

# --- the layout table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetLayout:
    """Where one dataset lies under its data root.

    ``folder`` is relative to the data root; ``required`` (relative to ``folder``; a trailing ``/`` marks a
    folder) is what the reader checks for before reading; ``contents`` describes the rest of the tree for people
    (``<class>`` stands for each class's folder); ``alternative`` is another layout the reader accepts.
    """

    folder: str
    required: tuple[str, ...] = ()
    contents: tuple[str, ...] = ()
    alternative: str = ""

    def required_paths(self, root: Path) -> list[Path]:
        """The required paths under the data root ``root`` (the dataset's folder first)."""
        base = root / self.folder
        return [base] + [base / r.rstrip("/") for r in self.required]


LAYOUTS: dict[str, DatasetLayout] = {
    "tinyimagenet": DatasetLayout(
        "tiny-imagenet-200", ("wnids.txt", "words.txt"),
        ("val/val_annotations.txt", "val/images/val_*.JPEG", "train/<wnid>/images/*.JPEG (for zsrbench train)"),
        "val/<wnid>/ class folders instead of val/images/ with val_annotations.txt"),
    "cifar10": DatasetLayout("cifar-10-batches-py", ("test_batch", "batches.meta")),
    "cifar100": DatasetLayout("cifar-100-python", ("test", "meta")),
    "stl10": DatasetLayout("stl10_binary", ("test_X.bin", "test_y.bin"), ("class_names.txt (optional)",)),
    "sun397": DatasetLayout("SUN397", ("ClassName.txt",), ("<letter>/<class>/sun_*.jpg, e.g. a/abbey/",)),
    "food101": DatasetLayout("food-101", ("meta/test.json", "images/"), ("images/<class>/*.jpg",)),
    "oxford_pets": DatasetLayout("oxford-iiit-pet", ("annotations/test.txt", "images/"), ("images/*.jpg",)),
    "flowers102": DatasetLayout("flowers-102", ("jpg/", "imagelabels.mat", "setid.mat"), ("jpg/image_*.jpg",)),
    "dtd": DatasetLayout("dtd/dtd", ("labels/test1.txt", "images/"), ("images/<class>/*.jpg",)),
    "eurosat": DatasetLayout("eurosat/2750", (), ("<class>/*.jpg (10 class folders, e.g. AnnualCrop/)",)),
    "fgvc_aircraft": DatasetLayout(
        "fgvc-aircraft-2013b", ("data/variants.txt", "data/images_variant_test.txt", "data/images/"),
        ("data/images/*.jpg",)),
    "imagenet": DatasetLayout(
        "imagenet", ("val/",), ("val/<wnid>/*.JPEG (1000 class folders)",),
        "ImageNet/ instead of imagenet/; a flat val/ is sorted by zsrbench data prepare"),
    "caltech101": DatasetLayout(
        "caltech101/101_ObjectCategories", (), ("<class>/image_*.jpg (BACKGROUND_Google/ is left out)",)),
    "caltech256": DatasetLayout("caltech256/256_ObjectCategories", (), ("<NNN.class>/*.jpg, e.g. 001.ak47/",)),
    "stanford_cars": DatasetLayout(
        "stanford_cars", ("devkit/cars_meta.mat", "cars_test_annos_withlabels.mat", "cars_test/"),
        ("cars_test/*.jpg",), "cars_annos.mat with car_ims/ (the all-in-one release)"),
    "pcam": DatasetLayout(
        "pcam", ("camelyonpatch_level_2_split_test_x.h5", "camelyonpatch_level_2_split_test_y.h5")),
}


def layout_lines(key: str) -> list[str]:
    """The layout of dataset ``key`` as paths relative to the data root, for people (docs, messages)."""
    lay = LAYOUTS[key]
    lines = [f"{lay.folder}/{r}" for r in lay.required + lay.contents] or [f"{lay.folder}/"]
    if lay.alternative:
        lines.append(f"or: {lay.alternative}")
    return lines


# --- the data root option: one folder, or a template with {dataset} ---------------------------------------------

ROOT_PLACEHOLDERS = ("dataset",)


def root_placeholders(root: str | Path | None) -> list[str]:
    """The placeholders of a ``--data-root`` value (``[]``: a plain folder); a bad template is a ZsrError."""
    if root is None:
        return []
    text = str(root)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ZsrError(f"--data-root {text!r} is not a valid folder template ({exc}). Use one folder for all "
                       "datasets, or a template with {dataset}, e.g. '/data/{dataset}'; write a literal brace in "
                       "a folder name as {{ or }}.") from None
    for name, spec, conv in fields:
        if name not in ROOT_PLACEHOLDERS or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise ZsrError(
                f"--data-root {text!r} holds the placeholder {shown}, which zsrbench does not know: the only "
                "placeholder is {dataset}, replaced by each dataset's zsrbench name (e.g. '/data/{dataset}' reads "
                "CIFAR-10 from /data/cifar10/cifar-10-batches-py). Fix the template, or write a literal brace in a "
                "folder name as {{ or }}.")
    return [name for name, _, _ in fields]


def is_root_template(root: str | Path | None) -> bool:
    """Whether ``--data-root`` is a per-dataset template (it holds ``{dataset}``); a bad template is a ZsrError."""
    return bool(root_placeholders(root))


def dataset_root(root: str | Path | None, dataset: str) -> Path | None:
    """The data root of ``dataset``: ``root`` itself, or the template ``root`` with ``{dataset}`` filled in.

    This is the one place the ``--data-root`` option is resolved (``None`` stays ``None``); the dataset's own
    folder lies under the result in the layout of :data:`LAYOUTS` (``/data/{dataset}`` and cifar10 give
    ``/data/cifar10/cifar-10-batches-py``).
    """
    if root is None or str(root) == "":
        return None
    text = str(root)
    if root_placeholders(text) or "{{" in text or "}}" in text:
        text = text.format(dataset=dataset)
    return Path(text).expanduser()


NAME_MAX = 255  # bytes per file or folder name on the usual filesystems
PATH_MAX = 4096  # bytes per path on Linux


def require_usable_root(root: str | Path | None, option: str = "--data-root") -> None:
    """Refuse a ``--data-root`` (a folder or a template) the filesystem cannot look up: a name longer than it
    allows, a path over PATH_MAX, a NUL byte. ``os.stat`` would raise ``OSError``/``ValueError`` on it."""
    if root is None or str(root) == "":
        return
    text = str(root)
    longest_key = max(LAYOUTS, key=len)
    resolved = dataset_root(text, longest_key) if is_root_template(text) else Path(text).expanduser()
    require_usable_path(resolved, option, f"{option} {text}")


def require_usable_path(path: Path, option: str, what: str) -> None:
    """Refuse ``path`` (a ZsrError naming ``what`` and ``option``) when it cannot be looked up: a name longer than
    the filesystem allows, a path over PATH_MAX, a NUL byte, or another error than "not there"."""
    import errno
    import os

    parts = [p for p in Path(path).parts if len(os.fsencode(p)) > NAME_MAX]
    if parts:
        raise ZsrError(f"{what}: the name '{parts[0][:40]}…' is too long ({len(os.fsencode(parts[0]))} bytes; most "
                       f"filesystems allow {NAME_MAX}). Pass a shorter path with {option}.")
    if "\x00" in str(path) or len(os.fsencode(str(path))) >= PATH_MAX:
        raise ZsrError(f"{what}: the path is not usable (longer than {PATH_MAX} bytes, or a NUL byte in it). Pass "
                       f"a shorter path with {option}.")
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ZsrError(f"{what} cannot be looked up ({exc.strerror}). Pass another path with {option}.") from None


def dataset_folder(root: str | Path | None, dataset: str) -> Path | None:
    """Where dataset ``dataset`` of the layout table is expected under the ``--data-root`` value ``root``."""
    base = dataset_root(root, dataset)
    return base / LAYOUTS[dataset].folder if base is not None and dataset in LAYOUTS else None


# --- errors and path checks ------------------------------------------------------------------------------------


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


def data_root(root: str | Path | None, title: str, how_to_obtain: str, create: bool = False) -> Path:
    """The (resolved) data root as a Path; a missing root is a :class:`DataMissingError` unless ``create``.

    ``create`` makes the folder (and its parents) first: for a download, which fills it.
    """
    if root is None or str(root) == "":
        raise DataMissingError(
            f"{title} is read from a local data root, but none was given. Pass --data-root DIR (the folder that "
            f"holds the datasets, or a template such as /data/{{dataset}}). How to obtain it: {how_to_obtain}"
        )
    path = Path(root).expanduser()
    if create and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
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
