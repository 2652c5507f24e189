"""One reader per tga16 dataset (:data:`READERS`): each finds its dataset under the data root (downloading it
through torchvision where asked and possible), checks its layout, and returns the dataset with its class names
normalised as the TGA-ZSR reference code does (:mod:`zsrbench.data.naming`). The file formats themselves are
read by :mod:`zsrbench.data.readers`. :data:`SPLITS` lists the splits a dataset has beyond the protocol's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from zsrbench.data import naming
from zsrbench.data import readers as rd
from zsrbench.data.layout import LAYOUTS, first_existing
from zsrbench.data.read_context import Ctx, Read, all_exist, class_folder_samples, require_filled
from zsrbench.data.safe_pickle import UnsafePickleError
from zsrbench.data.tga16_table import SOURCES


def _tinyimagenet(c: Ctx) -> Read:
    folder = c.folder()
    c.fetch(folder, [folder], lambda: SOURCES[c.key].fetch.run(c.root))  # type: ignore[union-attr]
    c.need_folder(folder)
    c.need(*c.required()[1:], folder / c.split)
    wnids = sorted({ln.strip() for ln in (folder / "wnids.txt").read_text().splitlines() if ln.strip()})
    words = naming.read_words(folder / "words.txt", wnids)
    if len(words) != len(wnids):
        missing = [w for w in wnids if w not in words]
        raise c.error(folder / "words.txt", f"no entry for {len(missing)} wnids of wnids.txt, e.g. {missing[0]}")
    if c.split == "train":
        files, labels = class_folder_samples(c, folder / "train", wnids, recursive=True)
        layout = "train/<wnid>/images"
    else:
        files, labels, layout = _tiny_val(c, folder / "val", wnids)
    names = [naming.normalise(words[w]) for w in wnids]
    extra = {"layout": layout, "classnames_from": "words.txt (first lemma)"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _tiny_val(c: Ctx, val: Path, wnids: list[str]) -> tuple[list[Path], list[int], str]:
    annotations, images = val / "val_annotations.txt", val / "images"
    if annotations.is_file() and images.is_dir():
        index = {w: i for i, w in enumerate(wnids)}
        rows = rd.read_val_annotations(annotations)
        unknown = sorted({w for _, w in rows if w not in index})
        if unknown:
            raise c.error(annotations, f"{len(unknown)} wnids not in wnids.txt, e.g. {unknown[0]}")
        files = [images / name for name, _ in rows]
        all_exist(c, files, images)
        return files, [index[w] for _, w in rows], "val/val_annotations.txt + val/images"
    if any((val / w).is_dir() for w in wnids):  # already re-organised into class folders
        files, labels = class_folder_samples(c, val, wnids, recursive=True)
        return files, labels, "val/<wnid>/"
    raise c.error(val, "expected val/val_annotations.txt with val/images/, or class folders val/<wnid>/")


def _cifar(c: Ctx, names_key: str) -> Read:
    c.fetch_layout()
    folder = c.need_layout()
    test_file, meta_file = LAYOUTS[c.key].required  # the test batch and the class names
    try:
        images, labels = rd.cifar_arrays(rd.read_cifar_pickle(folder / test_file))
        names = rd.read_cifar_pickle(folder / meta_file)[names_key]
    except UnsafePickleError as exc:  # a pickle naming code to run: never loaded
        raise UnsafePickleError(f"{c.title}: {exc} How to obtain it: {c.how}") from None
    except Exception as exc:  # unpickling errors, missing keys, wrong sizes
        raise c.error(folder, f"cannot read the CIFAR python batches: {type(exc).__name__}: {exc}") from exc
    extra = {"classnames_from": f"{meta_file}[{names_key!r}]"}
    return Read(rd.ArrayImageDataset(images, labels, c.transform), [naming.normalise(n) for n in names], folder, extra)


def _cifar10(c: Ctx) -> Read:
    return _cifar(c, "label_names")


def _cifar100(c: Ctx) -> Read:
    return _cifar(c, "fine_label_names")


def _stl10(c: Ctx) -> Read:
    c.fetch_layout()
    folder, x_path, y_path = c.required()
    c.need_layout()
    names_path = folder / "class_names.txt"
    try:
        n = rd.stl10_count(x_path)
    except ValueError as exc:
        raise c.error(folder, str(exc)) from exc
    labels = rd.stl10_labels(y_path)
    if len(labels) != n:
        raise c.error(folder, f"test_X.bin holds {n} images but test_y.bin {len(labels)} labels")
    names = names_path.read_text().split() if names_path.is_file() else list(naming.STL10_CLASSES)
    extra = {"classnames_from": "class_names.txt" if names_path.is_file() else "zsrbench (STL-10 class order)"}
    dataset = rd.ArrayImageDataset(rd.stl10_opener(x_path), labels, c.transform)
    return Read(dataset, [naming.normalise(n) for n in names], folder, extra)


def _sun397(c: Ctx) -> Read:
    # Same files and labels as torchvision.datasets.SUN397, but in sorted order: torchvision keeps the order of
    # the file-system walk, which differs between machines and would change a seeded --n-samples subset.
    c.fetch_layout()
    folder = c.need_layout()
    lines = (folder / "ClassName.txt").read_text().splitlines()
    classes = [naming.sun397_class(ln) for ln in lines if ln.strip()]
    index = {name: i for i, name in enumerate(classes)}
    files = sorted(folder.rglob("sun_*.jpg"))
    labels = []
    for f in files:
        name = "/".join(f.relative_to(folder).parts[1:-1])
        if name not in index:
            raise c.error(f.parent, f"{f.name} lies in a folder that is not a class of ClassName.txt")
        labels.append(index[name])
    names = [naming.normalise(n) for n in classes]
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, {"classnames_from": "ClassName.txt"})


def _food101(c: Ctx) -> Read:
    from torchvision.datasets import Food101

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: Food101(str(c.root), split="test", transform=c.transform))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "meta/test.json (sorted keys)"})


def _oxford_pets(c: Ctx) -> Read:
    from torchvision.datasets import OxfordIIITPet

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: OxfordIIITPet(
        str(c.root), split="test", target_types="category", transform=c.transform))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "annotations/test.txt (image names)"})


def _flowers102(c: Ctx) -> Read:
    c.fetch_layout()
    folder = c.need_layout()
    try:
        ids, labels = rd.flowers102_split(folder / "setid.mat", folder / "imagelabels.mat", "tstid")
    except Exception as exc:
        raise c.error(folder, f"cannot read setid.mat / imagelabels.mat: {type(exc).__name__}: {exc}") from exc
    files = [folder / "jpg" / f"image_{i:05d}.jpg" for i in ids]
    all_exist(c, files, folder / "jpg")
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in naming.flowers102_classes()]
    extra = {"classnames_from": "zsrbench/data/classnames/flowers102.txt"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _dtd(c: Ctx) -> Read:
    from torchvision.datasets import DTD

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: DTD(str(c.root), split="test", partition=1, transform=c.transform))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "labels/test1.txt", "partition": 1})


def _eurosat(c: Ctx) -> Read:
    from torchvision.datasets import EuroSAT

    c.fetch_layout()
    folder = c.need_layout()
    require_filled(c, folder, rd.class_folders(folder))  # torchvision would only say "Found no valid file ..."
    ds = c.call(folder, lambda: EuroSAT(str(c.root), transform=c.transform))
    if list(ds.classes) != sorted(naming.EUROSAT_PHRASES):
        raise c.error(folder, f"class folders {list(ds.classes)} are not the 10 EuroSAT classes "
                              f"{sorted(naming.EUROSAT_PHRASES)}")
    names = [naming.EUROSAT_PHRASES[f] for f in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "zsrbench EuroSAT phrases (by class folder)"})


def _fgvc_aircraft(c: Ctx) -> Read:
    from torchvision.datasets import FGVCAircraft

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: FGVCAircraft(
        str(c.root), split="test", annotation_level="variant", transform=c.transform))
    names = [naming.aircraft_name(n) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "data/variants.txt"})


def _imagenet(c: Ctx) -> Read:
    from torchvision.datasets import ImageNet

    folder = first_existing(c.root, (LAYOUTS[c.key].folder, "ImageNet"))
    val = folder / "val"
    c.fetch(folder, [val], lambda: ImageNet(str(folder), split="val"))  # only sorts the archives the user put there
    c.need_folder(folder)
    c.need(val)
    wnids = [w for w, _ in naming.imagenet_classes()]
    present = set(rd.class_folders(val))
    if not present:
        n_flat = len(rd.images_in(val))
        raise c.error(val, f"no class folders (val/ holds {n_flat} images directly): the val images must be "
                           "sorted into val/<wnid>/ folders; zsrbench data prepare --data-root DIR --datasets "
                           "imagenet sorts them, given the labels (LOC_val_solution.csv, or the devkit)")
    unknown = sorted(present - set(wnids))
    if unknown:
        raise c.error(val, f"{len(unknown)} folders are not ImageNet-1k wnids, e.g. {unknown[0]}/")
    loose = rd.images_in(val)
    if loose:  # a sort that was stopped half-way: reading the class folders would leave these images out
        raise c.error(val, f"{len(loose)} images lie directly in val/ beside its class folders, e.g. {loose[0].name}: "
                           "a sort was interrupted; zsrbench data prepare --data-root DIR --datasets imagenet "
                           "finishes it")
    files, labels = class_folder_samples(c, val, wnids)
    names = [n for _, n in naming.imagenet_classes()]
    extra = {"classnames_from": "zsrbench/data/classnames/imagenet.txt (CLIP names)"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _caltech101(c: Ctx) -> Read:
    from torchvision.datasets import Caltech101

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: Caltech101(str(c.root), target_type="category", transform=c.transform))
    require_filled(c, folder, list(ds.categories))
    names = [naming.normalise(n) for n in ds.categories]
    return Read(ds, names, folder, {"classnames_from": "101_ObjectCategories folders (no BACKGROUND_Google)"})


def _caltech256(c: Ctx) -> Read:
    from torchvision.datasets import Caltech256

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: Caltech256(str(c.root), transform=c.transform))
    require_filled(c, folder, list(ds.categories))
    names = [naming.caltech256_name(n) for n in ds.categories]
    return Read(ds, names, folder, {"classnames_from": "256_ObjectCategories folders (incl. 257.clutter)"})


def _stanford_cars(c: Ctx) -> Read:
    folder = c.folder()
    c.need_folder(folder)
    if (folder / "devkit").is_dir():
        from torchvision.datasets import StanfordCars

        c.need_layout()
        ds = c.call(folder, lambda: StanfordCars(str(c.root), split="test", transform=c.transform))
        classes, layout = list(ds.classes), "devkit"
    elif (folder / "cars_annos.mat").is_file():
        try:
            rel, labels, classes = rd.cars_annos(folder / "cars_annos.mat", test=True)
        except Exception as exc:
            raise c.error(folder, f"cannot read cars_annos.mat: {type(exc).__name__}: {exc}") from exc
        files = [folder / r for r in rel]
        all_exist(c, files, folder)
        ds, layout = rd.FileListDataset(files, labels, c.transform), "cars_annos.mat"
    else:
        raise c.error(folder, "expected devkit/ with cars_test/ and cars_test_annos_withlabels.mat (the "
                              "torchvision layout), or cars_annos.mat with car_ims/")
    names = [naming.car_name(n) for n in classes]
    return Read(ds, names, folder, {"layout": layout, "classnames_from": "class_names of the .mat (year dropped)"})


def _pcam(c: Ctx) -> Read:
    from torchvision.datasets import PCAM

    folder = c.folder()
    rd.require_h5py()
    if c.download:
        rd.require_gdown()
    c.fetch_layout()
    c.need_layout()
    ds = c.call(folder, lambda: PCAM(str(c.root), split="test", transform=c.transform))
    return Read(ds, list(naming.PCAM_CLASSNAMES), folder, {"classnames_from": "zsrbench (fixed PCAM prompts)"})


READERS: dict[str, Callable[[Ctx], Read]] = {
    "tinyimagenet": _tinyimagenet, "cifar10": _cifar10, "cifar100": _cifar100, "stl10": _stl10,
    "sun397": _sun397, "food101": _food101, "oxford_pets": _oxford_pets, "flowers102": _flowers102,
    "dtd": _dtd, "eurosat": _eurosat, "fgvc_aircraft": _fgvc_aircraft, "imagenet": _imagenet,
    "caltech101": _caltech101, "caltech256": _caltech256, "stanford_cars": _stanford_cars, "pcam": _pcam,
}
SPLITS: dict[str, tuple[str, ...]] = {"tinyimagenet": ("val", "train")}  # others: only the protocol split
