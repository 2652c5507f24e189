"""Sorting ImageNet's flat validation folder into class folders, from the official labels.

ImageNet's 50,000 validation images are distributed as one flat folder (``ILSVRC2012_val_00000001.JPEG`` ...);
zsrbench reads them from ``val/<wnid>/`` class folders. The labels are read from either

- the ILSVRC2012 devkit, as ``torchvision.datasets.ImageNet`` reads it: ``ILSVRC2012_validation_ground_truth.txt``
  (one ILSVRC2012 class id per image, in file order) with ``meta.mat`` (the WordNet id of each class id), loose
  or inside ``ILSVRC2012_devkit_t12.tar.gz``; or the ``meta.bin`` torchvision writes from it;
- ``LOC_val_solution.csv`` of Kaggle's ImageNet Object Localization Challenge (``ImageId`` and a
  ``PredictionString`` whose first word is the WordNet id).

:func:`sort_val` renames each loose image into its class folder, within the same folder tree: nothing is ever
copied, and the state lives on disk (an image is either still loose or in its class folder), so a sort that was
interrupted is finished by running it again, and a sorted folder is left as it is. Everything is checked before
the first file moves (every loose image labelled, no folder that is not a class, no image in two places), and
the counts are verified after the last.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from zsrbench.data import naming
from zsrbench.data.readers import IMAGE_EXTENSIONS
from zsrbench.errors import ZsrError

KAGGLE_CSV = "LOC_val_solution.csv"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META_MAT = "meta.mat"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"
TORCHVISION_META = "meta.bin"
BOTH_FORMS = (
    f"{KAGGLE_CSV} (Kaggle's ImageNet Object Localization Challenge), or {GROUND_TRUTH} with {META_MAT} (the "
    f"ILSVRC2012 devkit from image-net.org, {DEVKIT_ARCHIVE}, loose or as the archive, as "
    "torchvision.datasets.ImageNet reads it)"
)


@dataclass(frozen=True)
class ValLabels:
    """The class (WordNet id) of each validation image, by file stem (``ILSVRC2012_val_00000001``)."""

    source: str  # the file(s) they were read from
    wnid_of: dict[str, str]


@dataclass(frozen=True)
class SortReport:
    """What :func:`sort_val` did: images moved now, images found already in place, and the verified totals."""

    val: str
    labels: str
    moved: int
    already_sorted: int
    n_sorted: int  # labelled images in their class folders at the end
    n_classes: int  # class folders holding them
    unfound: int  # labelled images that are nowhere in val/ (a partial copy)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        text = (f"{verb} {self.moved:,} images into class folders ({self.already_sorted:,} were already sorted); "
                f"{self.n_sorted:,} images in {self.n_classes} class folders of {self.val}, labels from "
                f"{self.labels}")
        if self.unfound:
            text += f"; {self.unfound:,} images listed in the labels are not in val/ (a partial copy?)"
        return text


# --- reading the labels ------------------------------------------------------------------------------------------


def imagenet_wnids() -> set[str]:
    return {wnid for wnid, _ in naming.imagenet_classes()}


def read_kaggle_csv(text: str, source: str) -> ValLabels:
    """``LOC_val_solution.csv``: ``ImageId,PredictionString`` rows; the first word of the string is the wnid.

    Refuses a file that is not this CSV (another header, a field over the csv module's size limit, a NUL byte) and
    one that gives an image two classes; the same image listed twice with the same class is accepted.
    """
    not_kaggle = f"{source} is not Kaggle's {KAGGLE_CSV}"
    rows = csv.DictReader(io.StringIO(text))
    wnid_of: dict[str, str] = {}
    line_of: dict[str, int] = {}
    try:
        if not rows.fieldnames or not {"ImageId", "PredictionString"} <= set(rows.fieldnames):
            raise ZsrError(f"{not_kaggle}: its header is {rows.fieldnames}, expected ImageId,PredictionString. Pass "
                           "the file of the ImageNet Object Localization Challenge.")
        for row in rows:
            words = (row["PredictionString"] or "").split()
            if not row["ImageId"] or not words:
                raise ZsrError(f"{source}: line {rows.line_num} ({_short(row)}) has no image id or no class; the file "
                               "is damaged: re-download it.")
            stem = Path(row["ImageId"]).stem
            if stem in wnid_of and wnid_of[stem] != words[0]:
                raise ZsrError(f"{not_kaggle} as distributed: it gives the image {stem} two classes, {wnid_of[stem]} "
                               f"(line {line_of[stem]}) and {words[0]} (line {rows.line_num}), where the Kaggle file "
                               "lists each image once. Pass the file of the ImageNet Object Localization Challenge.")
            line_of.setdefault(stem, rows.line_num)
            wnid_of[stem] = words[0]
    except csv.Error as exc:  # a field over csv.field_size_limit(), a NUL byte, a broken quote
        raise ZsrError(f"{not_kaggle}: line {rows.reader.line_num} cannot be read as CSV ({exc}). Pass the file of the "
                       "ImageNet Object Localization Challenge.") from None
    return ValLabels(source, wnid_of)


def _short(row: object, limit: int = 120) -> str:
    text = repr(row)
    return text if len(text) <= limit else text[:limit] + "…"


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the labels file ``path`` (a BOM is dropped); a ZsrError calling it "not ``what``" when it is
    not UTF-8, and one saying why when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ZsrError(f"Cannot read {path} ({exc.strerror or exc}); pass a readable labels file.") from None
    return decode_text(data, str(path), what)


def decode_text(data: bytes, source: str, what: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ZsrError(f"{source} is not {what}: it is not UTF-8 text ({exc.reason} at byte {exc.start}, "
                       f"{data[exc.start:exc.start + 1]!r}). Pass the file as distributed.") from None
    if "\x00" in text:
        raise ZsrError(f"{source} is not {what}: it holds a NUL byte (at byte {data.index(0)}), which no text file "
                       "does. Pass the file as distributed.")
    return text


def read_meta_mat(data: bytes | Path, source: str) -> dict[int, str]:
    """The devkit's ``meta.mat``: ILSVRC2012 class id -> wnid, for the 1000 leaf synsets (no children)."""
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - scipy is a dependency
        raise ZsrError(f"Reading {source} needs scipy: pip install scipy") from exc
    try:
        synsets = loadmat(io.BytesIO(data) if isinstance(data, bytes) else str(data), squeeze_me=True)["synsets"]
        ids, wnids, children = synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]
        return {int(i): str(w) for i, w, n in zip(ids, wnids, children, strict=True) if int(n) == 0}
    except Exception as exc:  # not a .mat, no synsets, other fields
        raise ZsrError(f"{source} is not the ILSVRC2012 devkit's meta.mat ({type(exc).__name__}: {exc}). Use the "
                       f"meta.mat of {DEVKIT_ARCHIVE}.") from exc


def read_ground_truth(text: str, wnid_of_id: dict[int, str], source: str) -> ValLabels:
    """``ILSVRC2012_validation_ground_truth.txt``: line i holds the class id of ``ILSVRC2012_val_<i>``."""
    wnid_of = {}
    for i, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
        try:
            wnid_of[f"ILSVRC2012_val_{i:08d}"] = wnid_of_id[int(line)]
        except (ValueError, KeyError):
            raise ZsrError(f"{source}: line {i} is {line.strip()!r}, not a class id of meta.mat; use the ground "
                           "truth file and meta.mat of the same ILSVRC2012 devkit.") from None
    return ValLabels(source, wnid_of)


def read_devkit_archive(path: Path) -> ValLabels:
    """The ground truth and meta.mat read from inside ``ILSVRC2012_devkit_t12.tar.gz`` (nothing extracted)."""
    try:
        with tarfile.open(path) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            if GROUND_TRUTH not in members or META_MAT not in members:
                raise ZsrError(f"{path} holds no {GROUND_TRUTH} and {META_MAT}; it is not the ILSVRC2012 devkit "
                               f"({DEVKIT_ARCHIVE}).")
            meta = tar.extractfile(members[META_MAT]).read()  # type: ignore[union-attr]
            truth = tar.extractfile(members[GROUND_TRUTH]).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ZsrError(f"{path} cannot be read as a tar.gz archive ({exc}); re-download {DEVKIT_ARCHIVE}.") from exc
    source = f"{path} ({GROUND_TRUTH})"
    text = decode_text(truth, source, f"the devkit's {GROUND_TRUTH}")
    return read_ground_truth(text, read_meta_mat(meta, f"{path}:{META_MAT}"), source)


def read_torchvision_meta(path: Path) -> ValLabels:
    """torchvision's ``meta.bin``: (wnid -> names, the wnid of each val image in sorted file order)."""
    import torch

    try:
        _, val_wnids = torch.load(path, weights_only=True)
        wnid_of = {f"ILSVRC2012_val_{i:08d}": str(w) for i, w in enumerate(val_wnids, start=1)}
    except Exception as exc:
        raise ZsrError(f"{path} is not the meta.bin torchvision.datasets.ImageNet writes ({type(exc).__name__}: "
                       f"{exc}); delete it, or use {BOTH_FORMS}.") from exc
    return ValLabels(str(path), wnid_of)


def read_labels(path: Path) -> ValLabels:
    """The labels in ``path``: a file of either form (a ground truth file needs meta.mat beside it) or a folder."""
    path = Path(path).expanduser()
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # e.g. a name longer than the filesystem allows
        raise ZsrError(f"ImageNet labels file {path} cannot be looked up ({exc.strerror or exc}); pass "
                       f"{BOTH_FORMS}.") from None
    if is_dir:
        found = _labels_in(path)
        if found is None:
            raise ZsrError(f"{path} holds none of the ImageNet validation labels; expected {BOTH_FORMS}.")
        return found
    if not is_file:
        raise ZsrError(f"ImageNet labels file {path} does not exist; pass {BOTH_FORMS}.")
    if path.name.endswith(".csv"):
        return read_kaggle_csv(read_text(path, f"Kaggle's {KAGGLE_CSV}"), str(path))
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return read_devkit_archive(path)
    if path.name == TORCHVISION_META:
        return read_torchvision_meta(path)
    if path.suffix == ".txt":
        meta = path.parent / META_MAT
        if not meta.is_file():
            raise ZsrError(f"{path} gives each image a class id; the ids' WordNet ids are in the devkit's {META_MAT}, "
                           f"which is not beside it ({meta}). Put meta.mat there, or pass {DEVKIT_ARCHIVE}.")
        text = read_text(path, f"the devkit's {GROUND_TRUTH}")
        return read_ground_truth(text, read_meta_mat(meta, str(meta)), f"{path} + {meta}")
    raise ZsrError(f"{path} is not a labels file zsrbench reads; pass {BOTH_FORMS}.")


def _labels_in(folder: Path) -> ValLabels | None:
    if (folder / KAGGLE_CSV).is_file():
        return read_kaggle_csv(read_text(folder / KAGGLE_CSV, f"Kaggle's {KAGGLE_CSV}"), str(folder / KAGGLE_CSV))
    for data in (folder, folder / DEVKIT_DATA):
        if (data / GROUND_TRUTH).is_file() and (data / META_MAT).is_file():
            return read_labels(data / GROUND_TRUTH)
    if (folder / DEVKIT_ARCHIVE).is_file():
        return read_devkit_archive(folder / DEVKIT_ARCHIVE)
    if (folder / TORCHVISION_META).is_file():
        return read_torchvision_meta(folder / TORCHVISION_META)
    return None


def find_labels(folders: Iterable[Path], what: str) -> ValLabels:
    """The labels in the first of ``folders`` that holds them; a ZsrError naming both forms when none does."""
    folders = list(dict.fromkeys(Path(f) for f in folders))
    for folder in folders:
        if folder.is_dir():
            found = _labels_in(folder)
            if found is not None:
                return found
    raise ZsrError(
        f"{what}: sorting it into val/<wnid>/ class folders needs the official validation labels, and none were "
        f"found in {', '.join(map(str, folders))}. Put either {BOTH_FORMS} into {folders[0]}, or pass "
        "--imagenet-labels FILE.")


# --- sorting ------------------------------------------------------------------------------------------------------


def is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def loose_images(val: Path) -> list[str]:
    """The image files directly in ``val`` (not in a class folder), sorted."""
    return sorted(e.name for e in os.scandir(val) if e.is_file() and is_image(e.name))


def sort_val(val: Path, labels: ValLabels, *, dry_run: bool = False,
             move: Callable[[str, str], Any] = os.rename) -> SortReport:
    """Sort the flat (or half-sorted) ImageNet ``val`` folder into ``val/<wnid>/`` by renaming each image once.

    Refuses (a ZsrError, nothing moved) when ``val`` is neither flat nor sorted: a sub-folder that is not an
    ImageNet class, a loose image the labels do not list, an image both loose and in its class folder, or an
    image in another class's folder. ``move`` is ``os.rename`` (tests interrupt it).
    """
    val = Path(val)
    if not val.is_dir():
        raise ZsrError(f"ImageNet: {val} is not a folder; put the 50,000 validation images there.")
    known = imagenet_wnids()
    alien = sorted(set(labels.wnid_of.values()) - known)
    if alien:
        raise ZsrError(f"{labels.source} labels images with {len(alien)} classes that are not ImageNet-1k wnids "
                       f"(e.g. {alien[0]}): it is not the ILSVRC2012 validation labels.")
    loose = loose_images(val)
    folders = sorted(e.name for e in os.scandir(val) if e.is_dir())
    _refuse_unless_sortable(val, labels, loose, folders, known)
    placed = _sorted_stems(val, folders)
    _refuse_misplaced(val, labels, placed)
    stems = [Path(name).stem for name in loose]
    both = [name for name, stem in zip(loose, stems) if stem in placed]
    if both:
        raise ZsrError(f"ImageNet: {len(both)} images are both loose in {val} and in a class folder, e.g. "
                       f"{both[0]} and {val / placed[Path(both[0]).stem] / both[0]}; keep one copy of each (compare "
                       "them), then run the sort again. Nothing was moved.")
    already = len([s for s in placed if s in labels.wnid_of])
    if dry_run:
        classes = {placed[s] for s in placed if s in labels.wnid_of} | {labels.wnid_of[s] for s in stems}
        unfound = len(set(labels.wnid_of) - set(placed) - set(stems))
        return SortReport(str(val), labels.source, len(loose), already, already + len(loose), len(classes), unfound,
                          dry_run=True)
    for wnid in sorted({labels.wnid_of[s] for s in stems}):
        (val / wnid).mkdir(exist_ok=True)
    for name, stem in zip(loose, stems):
        move(str(val / name), str(val / labels.wnid_of[stem] / name))
    return _verified(val, labels, len(loose), already)


def _refuse_unless_sortable(val: Path, labels: ValLabels, loose: list[str], folders: list[str],
                            known: set[str]) -> None:
    not_classes = [f for f in folders if f not in known]
    if not_classes:
        raise ZsrError(
            f"ImageNet: {val} is neither flat nor sorted: it holds {len(not_classes)} folders that are not ImageNet "
            f"class folders (wnids), e.g. {not_classes[0]}/. Point val/ at the folder of the images themselves "
            "(e.g. Kaggle's ILSVRC/Data/CLS-LOC/val/) or at a sorted val/<wnid>/ tree. Nothing was moved.")
    if not loose and not folders:
        raise ZsrError(f"ImageNet: {val} holds no images. Put the 50,000 validation JPEGs there (flat, as "
                       "distributed) or sorted into val/<wnid>/ folders.")
    unlisted = [name for name in loose if Path(name).stem not in labels.wnid_of]
    if unlisted:
        raise ZsrError(
            f"ImageNet: {len(unlisted)} of the {len(loose)} images in {val} are not in {labels.source} (e.g. "
            f"{unlisted[0]}): these labels do not belong to these images, or the folder holds other files. "
            "Nothing was moved.")


def _sorted_stems(val: Path, folders: list[str]) -> dict[str, str]:
    """Stem -> class folder of every image already in a class folder of ``val``."""
    placed: dict[str, str] = {}
    for folder in folders:
        for entry in os.scandir(val / folder):
            if entry.is_file() and is_image(entry.name):
                placed[Path(entry.name).stem] = folder
    return placed


def _refuse_misplaced(val: Path, labels: ValLabels, placed: dict[str, str]) -> None:
    wrong = [(s, f) for s, f in placed.items() if s in labels.wnid_of and labels.wnid_of[s] != f]
    if wrong:
        stem, folder = sorted(wrong)[0]
        raise ZsrError(
            f"ImageNet: {len(wrong)} images in the class folders of {val} lie in another class than "
            f"{labels.source} gives them (e.g. {folder}/{stem}, labelled {labels.wnid_of[stem]}): the folder was "
            "sorted with other labels. Nothing was moved.")


def _verified(val: Path, labels: ValLabels, moved: int, already: int) -> SortReport:
    """Count again after moving: every labelled image that was there is in its own class folder, none is loose."""
    placed = _sorted_stems(val, sorted(e.name for e in os.scandir(val) if e.is_dir()))
    in_place = [s for s in placed if labels.wnid_of.get(s) == placed[s]]
    left = loose_images(val)
    if left or len(in_place) != already + moved:
        raise ZsrError(f"ImageNet: after sorting, {len(in_place):,} labelled images are in their class folders of "
                       f"{val} and {len(left):,} are loose, where {already + moved:,} and 0 were expected; another "
                       "process may be changing the folder. Run the sort again when it is alone.")
    n_classes = len({placed[s] for s in in_place})
    unfound = len(set(labels.wnid_of) - set(placed))
    return SortReport(str(val), labels.source, moved, already, len(in_place), n_classes, unfound)
