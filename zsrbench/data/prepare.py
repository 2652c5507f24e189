"""``zsrbench data prepare``: get the tga16 datasets into the layout zsrbench reads.

Per dataset, :func:`prepare_dataset` checks what is there (as ``zsrbench data check`` does) and then:

- a dataset that is found has the md5 of its files compared with the checksums torchvision publishes for them,
  where it publishes any (CIFAR batches, STL-10 binaries, Flowers102 labels, archives left beside the data);
- a missing one is downloaded where torchvision can (its own dataset class with ``download=True``, which checks
  its archive's md5; see :class:`zsrbench.data.fetch.Fetch`), into the dataset's data root, and checked again;
  the others are reported with what to fetch by hand and the exact folder to put it in;
- ImageNet's flat ``val/`` folder is sorted into class folders from the official labels
  (:mod:`zsrbench.data.imagenet_val`), and the archives from image-net.org are extracted and sorted by
  ``torchvision.datasets.ImageNet``;
- anything in a wrong layout is left as it is, with what is wrong.

Nothing that is there is ever deleted or overwritten. :func:`markdown_table` renders the table of docs/data.md
from the same tables the readers use.
"""

from __future__ import annotations

import hashlib
import html
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zsrbench.data import imagenet_val as iv
from zsrbench.data.archives import UnsafeArchiveError
from zsrbench.data.check import FOUND, MISSING, DatasetStatus, check_dataset
from zsrbench.data.layout import (
    LAYOUTS,
    dataset_root,
    first_existing,
    is_root_template,
    layout_lines,
    require_usable_path,
    require_usable_root,
)
from zsrbench.data.tga16_table import INFOS, SOURCES, TGA16_KEYS
from zsrbench.errors import ZsrError

NOTHING, VERIFIED, DOWNLOADED, SORTED, EXTRACTED = "nothing to do", "verified", "downloaded", "sorted", "extracted"
BY_HAND, NOT_DOWNLOADED, LEFT_AS_IS = "fetch by hand", "not downloaded", "left as is"
DOWNLOAD_FAILED, MISMATCH, REFUSED = "download failed", "checksum mismatch", "refused"


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_dataset` found, did, and left for the user, for one dataset."""

    name: str
    title: str
    before: str  # the check's status before (found, missing, wrong layout, ...)
    action: str  # what was done (one of the constants above; "would ..." in a dry run)
    status: str  # the check's status after
    path: str | None  # where the dataset's folder is expected
    message: str  # what was done, in detail, or what the user must do
    failed: bool = False  # an action went wrong: a download, a checksum, a sort

    @property
    def ok(self) -> bool:
        return self.status == FOUND and not self.failed


# --- checksums -----------------------------------------------------------------------------------------------


def _cifar_like(key: str, tvd, root: Path) -> list[tuple[Path, str]]:
    cls = getattr(tvd, SOURCES[key].fetch.cls)  # type: ignore[union-attr]
    folder = root / LAYOUTS[key].folder
    files = [(folder / name, md5) for name, md5 in list(cls.train_list) + list(cls.test_list)]
    if hasattr(cls, "meta"):
        files.append((folder / cls.meta["filename"], cls.meta["md5"]))
    return files + [(root / cls.filename, cls.tgz_md5)]


def _imagenet_archives(tvd, root: Path) -> list[tuple[Path, str]]:
    from torchvision.datasets.imagenet import ARCHIVE_META

    folder = first_existing(root, ("imagenet", "ImageNet"))
    return [(folder / ARCHIVE_META[part][0], ARCHIVE_META[part][1]) for part in ("val", "devkit")]


CHECKSUMS: dict[str, Callable[..., list[tuple[Path, str]]]] = {  # (tv.datasets, data root) -> [(path, md5)]
    "cifar10": lambda tvd, root: _cifar_like("cifar10", tvd, root),
    "cifar100": lambda tvd, root: _cifar_like("cifar100", tvd, root),
    "stl10": lambda tvd, root: _cifar_like("stl10", tvd, root),
    "flowers102": lambda tvd, root: [(root / "flowers-102" / n, m) for n, m in tvd.Flowers102._file_dict.values()],
    "food101": lambda tvd, root: [(root / Path(tvd.Food101._URL).name, tvd.Food101._MD5)],
    "dtd": lambda tvd, root: [(root / "dtd" / Path(tvd.DTD._URL).name, tvd.DTD._MD5)],
    "sun397": lambda tvd, root: [(root / Path(tvd.SUN397._DATASET_URL).name, tvd.SUN397._DATASET_MD5)],
    "oxford_pets": lambda tvd, root: [(root / "oxford-iiit-pet" / Path(u).name, m)
                                      for u, m in tvd.OxfordIIITPet._RESOURCES],
    "pcam": lambda tvd, root: [(root / "pcam" / f"{name}.gz", md5)
                               for name, _, md5 in tvd.PCAM._FILES["test"].values()],
    "imagenet": _imagenet_archives,
}


def known_checksums(key: str, root: Path) -> list[tuple[Path, str]]:
    """``(path, md5)`` of the files of ``key`` under the data root ``root`` whose md5 torchvision publishes.

    Read from torchvision's own dataset classes; a torchvision that names them differently gives ``[]``.
    """
    import torchvision.datasets as tvd

    if key not in CHECKSUMS:
        return []
    try:
        return CHECKSUMS[key](tvd, Path(root))
    except (AttributeError, KeyError, TypeError, ValueError, ImportError):
        return []


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(key: str, root: Path) -> tuple[list[Path], list[tuple[Path, str, str]]]:
    """(files whose md5 matches, ``(file, md5 found, md5 expected)`` of those that do not), of the files present."""
    good, bad = [], []
    for path, expected in known_checksums(key, root):
        if path.is_file():
            actual = md5_of(path)
            (good.append(path) if actual == expected else bad.append((path, actual, expected)))
    return good, bad


# --- one dataset ------------------------------------------------------------------------------------------------


def prepare_dataset(data_root: str | Path, key: str, *, download: bool = True, verify: bool = True,
                    imagenet_labels: str | Path | iv.ValLabels | None = None, dry_run: bool = False) -> Prepared:
    """Check, verify, download or sort dataset ``key`` of tga16 under ``data_root`` (a folder or a template).

    ``imagenet_labels``: the labels file for sorting ImageNet's flat val/ (or the labels read from it).
    """
    if key not in SOURCES:
        raise ZsrError(f"zsrbench data prepare knows the 16 datasets of tga16 ({', '.join(TGA16_KEYS)}), not "
                       f"'{key}'.")
    root = dataset_root(data_root, key)
    if root is None:
        raise ZsrError("zsrbench data prepare needs --data-root DIR: the folder that holds (or will hold) the "
                       "datasets, or a template such as /data/{dataset}.")
    before = check_dataset(data_root, key)
    if key == "imagenet":  # a half-sorted val/ can already read as found
        done = _imagenet(data_root, root, before, imagenet_labels, dry_run)
        if done is not None:
            return done
    if before.ok:
        return _verified(data_root, root, before, verify)
    if before.status == MISSING:
        return _fetched(data_root, root, before, download, dry_run)
    return _result(before, LEFT_AS_IS, before, f"{before.message.rstrip('.')}. zsrbench data prepare changes "
                   "nothing that is there: fix the folder, or move it away and run zsrbench data prepare again to "
                   "fetch a fresh copy.")


def _result(before: DatasetStatus, action: str, after: DatasetStatus, message: str, failed: bool = False
            ) -> Prepared:
    return Prepared(before.name, before.title, before.status, action, after.status, after.path, message, failed)


def _verified(data_root: str | Path, root: Path, st: DatasetStatus, verify: bool) -> Prepared:
    if not verify:
        return _result(st, NOTHING, st, f"found ({st.n_images:,} images); checksums not verified (--no-verify)")
    good, bad = verify_checksums(st.name, root)
    if bad:
        listed = "; ".join(f"{p} has md5 {a}, torchvision publishes {e}" for p, a, e in bad)
        again = f"zsrbench data prepare --data-root {shlex.quote(str(data_root))} --datasets {st.name}"
        inside = st.path is not None and any(Path(st.path) in p.parents for p, _, _ in bad)
        fix = (f"move the folder {st.path} away (or re-copy it)" if inside else "delete the archive")
        return _result(st, MISMATCH, st, f"{listed}: damaged, or another version of the dataset. Nothing was "
                       f"changed; {fix} and run {again}, which downloads a fresh copy where torchvision can.",
                       failed=True)
    if good:
        return _result(st, VERIFIED, st, f"found ({st.n_images:,} images); the md5 of "
                       f"{', '.join(p.name for p in good)} matches torchvision's")
    return _result(st, NOTHING, st, f"found ({st.n_images:,} images); torchvision publishes no checksum of its "
                   "extracted files, the layout was checked")


def _fetched(data_root: str | Path, root: Path, st: DatasetStatus, download: bool, dry_run: bool) -> Prepared:
    source = SOURCES[st.name]
    where = f"Expected at {st.path} (data root {root})."
    if source.fetch is None:
        return _result(st, BY_HAND, st, f"fetch it by hand: {source.manual}. {where}")
    if not download:
        return _result(st, NOTHING if dry_run else NOT_DOWNLOADED, st,
                       f"not downloaded (--no-download); torchvision can: {source.fetch.describe()}. By hand: "
                       f"{source.manual}. {where}")
    if dry_run:
        return _result(st, "would download", st, f"would download into {root} with {source.fetch.describe()}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        source.fetch.run(root)
    except UnsafeArchiveError:  # a hostile archive in the data root: stop everything (exit 2)
        raise
    except ZsrError as exc:  # a damaged archive (nothing extracted), an archive that would overwrite a file
        return _result(st, REFUSED, st, str(exc), failed=True)
    except Exception as exc:  # no network, a server that moved, a missing package (gdown), a full disk
        return _result(st, DOWNLOAD_FAILED, st, f"torchvision could not download it ({type(exc).__name__}: {exc}). "
                       f"Fetch it by hand: {source.manual}. {where}", failed=True)
    after = check_dataset(data_root, st.name)
    if not after.ok:
        return _result(st, DOWNLOADED, after, f"downloaded with {source.fetch.describe()}, but it is not usable: "
                       f"{after.message}", failed=True)
    return _result(st, DOWNLOADED, after, f"downloaded into {root} ({after.n_images:,} images) with "
                   f"{source.fetch.describe()}")


def _imagenet(data_root: str | Path, root: Path, st: DatasetStatus, labels: str | Path | iv.ValLabels | None,
              dry_run: bool) -> Prepared | None:
    """Sort a flat val/, or extract the archives the user put there; ``None`` when there is neither."""
    folder = first_existing(root, ("imagenet", "ImageNet"))
    val = folder / "val"
    if val.is_dir() and iv.loose_images(val):
        try:
            if isinstance(labels, iv.ValLabels):
                found = labels
            elif labels:
                found = iv.read_labels(Path(labels))
            else:
                found = iv.find_labels([folder, val, root],
                                       f"ImageNet: {val} holds {len(iv.loose_images(val)):,} images directly")
            report = iv.sort_val(val, found, dry_run=dry_run)
        except ZsrError as exc:
            return _result(st, REFUSED, st, str(exc), failed=True)
        after = st if dry_run else check_dataset(data_root, "imagenet")
        return _result(st, "would sort" if dry_run else SORTED, after, report.summary()
                       + ("" if after.ok or dry_run else f"; still not usable: {after.message}"),
                       failed=not (after.ok or dry_run))
    archives = [folder / iv.DEVKIT_ARCHIVE, folder / "ILSVRC2012_img_val.tar"]
    if not val.exists() and all(a.is_file() for a in archives):
        if dry_run:
            return _result(st, "would extract", st, f"torchvision.datasets.ImageNet would extract {archives[1]}")
        try:
            from torchvision.datasets import ImageNet

            ImageNet(str(folder), split="val")  # checks both archives' md5, extracts and sorts val/
        except Exception as exc:
            return _result(st, REFUSED, st, f"torchvision.datasets.ImageNet could not extract {archives[1]} "
                           f"({type(exc).__name__}: {exc}); re-download the archives from image-net.org.",
                           failed=True)
        after = check_dataset(data_root, "imagenet")
        return _result(st, EXTRACTED, after, f"torchvision.datasets.ImageNet extracted {archives[1]} into "
                       f"{val}/<wnid>/ (md5 checked)", failed=not after.ok)
    return None


# --- several datasets -----------------------------------------------------------------------------------------


def prepare(data_root: str | Path, names: list[str] | None = None, *, download: bool = True, verify: bool = True,
            imagenet_labels: str | Path | None = None, dry_run: bool = False,
            on_done: Callable[[Prepared], None] | None = None) -> list[Prepared]:
    """:func:`prepare_dataset` for each of ``names`` (the 16 of tga16 by default), in order.

    Bad arguments fail (a ZsrError) before anything is done: a bad template or an unusable path, an unknown name,
    and an ``imagenet_labels`` file that cannot be read as ImageNet's validation labels (when ImageNet is prepared).
    """
    from zsrbench.registry import DATASETS

    is_root_template(data_root)  # a bad template fails before anything is done
    require_usable_root(data_root)
    names = list(names) if names else list(TGA16_KEYS)
    for name in names:
        DATASETS.get(name)  # an unknown name fails with "did you mean" before anything is done
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ZsrError(f"zsrbench data prepare prepares the datasets of tga16 ({', '.join(TGA16_KEYS)}); "
                       f"{', '.join(unknown)} are not among them (generated datasets need no preparing).")
    labels: str | Path | iv.ValLabels | None = imagenet_labels
    if imagenet_labels is not None and "imagenet" in names:
        labels = _read_labels(Path(imagenet_labels))
    done = []
    for name in names:
        result = prepare_dataset(data_root, name, download=download, verify=verify, imagenet_labels=labels,
                                 dry_run=dry_run)
        done.append(result)
        if on_done is not None:
            on_done(result)
    return done


def _read_labels(path: Path) -> iv.ValLabels:
    """The labels of ``--imagenet-labels``, read before anything is done (a bad file is a bad argument)."""
    require_usable_path(path.expanduser(), "--imagenet-labels", f"--imagenet-labels {path}")
    try:
        return iv.read_labels(path)
    except ZsrError as exc:
        raise ZsrError(f"{str(exc).rstrip()} Nothing was moved.") from None


# --- the table of docs/data.md ------------------------------------------------------------------------------------

TABLE_COLUMNS = ("dataset", "split used", "torchvision download", "layout under the data root", "size",
                 "where to get it by hand (terms)")


def _cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|")


def _path_cell(line: str) -> str:
    """A layout line: the path as code, a note after it (" (...)", ", e.g. ...") and an "or: ..." as text."""
    if line.startswith("or: "):
        return _cell(line)
    cut = min((i for i in (line.find(" ("), line.find(", e.g.")) if i > 0), default=len(line))
    return f"`{line[:cut]}`{_cell(line[cut:])}"


def table_row(key: str) -> list[str]:
    """The cells of dataset ``key`` in the table of docs/data.md."""
    info, source = INFOS[key], SOURCES[key]
    download = ("no" if source.fetch is None else _cell(source.fetch.describe()))
    if key == "imagenet":
        download += "; `zsrbench data prepare` extracts the archives you put there (torchvision.datasets.ImageNet)"
    layout = "<br>".join(_path_cell(line) for line in layout_lines(key))
    by_hand = f"{_cell(source.manual)}<br>Source: {_cell(source.terms)}"
    return [f"`{key}` {info.title}", f"{info.split} ({source.n_images} images, {source.n_classes} classes)",
            download, layout, _cell(source.size), by_hand]


def markdown_table() -> str:
    """The table of the 16 datasets in docs/data.md, from :data:`LAYOUTS`, :data:`SOURCES` and :data:`INFOS`."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(table_row(key)) + " |" for key in TGA16_KEYS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m zsrbench.data.prepare: print the table of docs/data.md
    print(markdown_table(), end="")
