"""The 16 zero-shot datasets of the ``tga16`` protocol, read from a local data root: :func:`build` builds one by
key, :func:`download` downloads one, and importing this module registers the 16 in the dataset registry.

Every dataset lives under its data root in the layout torchvision uses. Building one reads only its metadata
(file lists, labels, class names); images are decoded lazily, except the first and last, which are read once to
catch a broken copy early. ``download=True`` uses torchvision's own download where there is one
(:class:`zsrbench.data.fetch.Fetch`; ``zsrbench data prepare`` does the same, see :mod:`zsrbench.data.prepare`).
A class with no images (an empty class folder) is a wrong layout; an image that cannot be decoded raises
:class:`~zsrbench.data.layout.BrokenImageError` naming the file when it is read, and ``skip_broken=True``
decodes every image at build time and leaves the broken ones out (``EvalSet.skipped``).

Class names come from each dataset's own metadata where it has any and are normalised as the TGA-ZSR reference
code does (see :mod:`zsrbench.data.naming`); so for most datasets the registered (static) ``DatasetInfo`` has
no class names and the ``EvalSet.info`` that ``build`` returns carries them. Static names exist only where
zsrbench fixes them: Flowers102 and ImageNet (data files in ``classnames/``), EuroSAT's phrases, PCAM's
prompts and STL-10.

Where each dataset lies under the data root is the table :data:`zsrbench.data.layout.LAYOUTS`; how to obtain
it, and how torchvision downloads it where it can, is :data:`zsrbench.data.tga16_table.SOURCES` (``docs/data.md``
is generated from both). One reader per dataset is in :mod:`zsrbench.data.tga16_readers`.
``--data-root`` is one folder for all datasets, or a template such as ``/data/{dataset}``
(:func:`zsrbench.data.layout.dataset_root`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from zsrbench.data import readers as rd
from zsrbench.data.base import DatasetBuilder, EvalSet, eval_transform
from zsrbench.data.layout import BrokenImageError, data_root, dataset_root
from zsrbench.data.read_context import Ctx, Read, some_names
from zsrbench.data.tga16_readers import READERS, SPLITS
from zsrbench.data.tga16_table import INFOS, SOURCES, TGA16_KEYS
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS


def download(key: str, root: str | Path) -> object:
    """Download dataset ``key`` of tga16 into the data root ``root`` through torchvision (a ZsrError if it cannot)."""
    fetch = SOURCES[key].fetch
    if fetch is None:
        raise ZsrError(f"{INFOS[key].title} cannot be downloaded by torchvision. How to obtain it: "
                       f"{SOURCES[key].how_to_obtain}")
    return fetch.run(Path(root))


def build(key: str, root: str | Path | None, *, image_size: int = 224, download: bool = False,
          split: str | None = None, transform: Callable[[Any], Any] | None = None, probe: bool = True,
          skip_broken: bool = False, **_: Any) -> EvalSet:
    """Build dataset ``key`` of tga16 from ``root``.

    ``split`` defaults to the protocol's (Tiny-ImageNet also has ``"train"``); ``transform`` replaces the
    protocol's eval transform (e.g. training augmentations); ``probe`` reads the first and last image;
    ``skip_broken`` decodes every image file once and leaves out those that cannot be decoded, listed in
    ``EvalSet.skipped``.
    """
    info = INFOS[key]
    splits = SPLITS.get(key, (info.split,))
    split = split or info.split
    if split not in splits:
        raise ZsrError(f"{info.title} has no split '{split}' in zsrbench; available: {', '.join(splits)}.")
    fetchable = download and SOURCES[key].fetch is not None  # a download may create the (per-dataset) root
    path = data_root(dataset_root(root, key), info.title, SOURCES[key].how_to_obtain, create=fetchable)
    tf = transform or eval_transform(info.input_mode, image_size)
    ctx = Ctx(key=key, root=path, transform=tf, download=download, split=split)
    read = READERS[key](ctx)
    if not isinstance(read.dataset, (rd.FileListDataset, rd.ArrayImageDataset)):
        read.dataset = rd.IntLabels(read.dataset)
    _check_classes(ctx, read)
    _check_filled(ctx, read)
    skipped: tuple[str, ...] = ()
    if skip_broken:
        read.dataset, skipped = rd.without_broken(read.dataset)
    if probe:
        _probe(ctx, read)
    info = replace(info, classnames=tuple(read.classnames), split=split)
    extra = {"folder": str(read.folder), "reader": SOURCES[key].reader, **read.extra}
    return EvalSet(info=info, dataset=read.dataset, root=str(path), extra=extra, skipped=skipped)


def _check_classes(c: Ctx, read: Read) -> None:
    expected = SOURCES[c.key].n_classes
    if len(read.classnames) != expected:
        raise c.error(read.folder, f"found {len(read.classnames)} classes, expected {expected}: the copy is "
                                   "partial or a different version of the dataset")


def _check_filled(c: Ctx, read: Read) -> None:
    """Every class has at least one image (where the dataset lists its labels; folders are checked by readers)."""
    labels = getattr(read.dataset, "labels", None)
    if labels is None or not labels:
        return
    empty = [read.classnames[k] for k in rd.empty_labels(labels, len(read.classnames))]
    if empty:
        raise c.error(read.folder, f"{len(empty)} of {len(read.classnames)} classes have no images ({some_names(empty)}"
                                   "): the copy is partial or a different version of the dataset")


def _probe(c: Ctx, read: Read) -> None:
    n = len(read.dataset)  # type: ignore[arg-type]
    if n == 0:
        raise c.error(read.folder, f"no images found for split '{c.split}'")
    for i in sorted({0, n - 1}):
        try:
            _, label = read.dataset[i]
        except BrokenImageError as exc:  # it names the file and what to do
            raise _titled(c.title, exc) from exc
        except Exception as exc:  # a missing or unreadable image file
            raise c.error(read.folder, f"cannot read image {i}: {type(exc).__name__}: {exc}") from exc
        if not 0 <= int(label) < len(read.classnames):
            raise c.error(read.folder, f"image {i} has label {label}, outside 0..{len(read.classnames) - 1}")


def _titled(title: str, exc: BrokenImageError) -> BrokenImageError:
    err = BrokenImageError(f"{title}: {exc}")
    err.path = exc.path
    return err


def _description(key: str) -> str:
    s, info = SOURCES[key], INFOS[key]
    size = f"{info.native_size} px native" if info.input_mode == "native" else "256->224 crop"
    return (f"{info.title} {info.split} ({s.n_images} images, {s.n_classes} classes, {size}); "
            f"<data-root>/{s.folder}, read by {s.reader}")


def _builder(key: str) -> DatasetBuilder:
    def build_fn(root: str | Path | None, *, image_size: int = 224, download: bool = False, **kw: Any) -> EvalSet:
        return build(key, root, image_size=image_size, download=download, **kw)

    return DatasetBuilder(info=INFOS[key], build_fn=build_fn, description=_description(key), needs_root=True,
                          how_to_obtain=SOURCES[key].how_to_obtain)


for _key in TGA16_KEYS:
    DATASETS.add(_key, _builder(_key))
