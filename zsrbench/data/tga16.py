"""The 16 zero-shot datasets of the ``tga16`` protocol, read from a local data root.

Every dataset lives under one ``--data-root DIR`` in the layout torchvision uses (the folder names below).
Building one reads only its metadata (file lists, labels, class names); images are decoded lazily, except the
first and last, which are read once to catch a broken copy early. ``download=True`` uses torchvision's own
download where there is one. A class with no images (an empty class folder) is a wrong layout; an image that
cannot be decoded raises :class:`~zsrbench.data.layout.BrokenImageError` naming the file when it is read, and
``skip_broken=True`` decodes every image at build time and leaves the broken ones out (``EvalSet.skipped``).

Class names come from each dataset's own metadata where it has any and are normalised as the TGA-ZSR reference
code does (see :mod:`zsrbench.data.naming`); so for most datasets the registered (static) ``DatasetInfo`` has
no class names and the ``EvalSet.info`` that ``build`` returns carries them. Static names exist only where
zsrbench fixes them: Flowers102 and ImageNet (data files in ``classnames/``), EuroSAT's phrases, PCAM's
prompts and STL-10.

=================  ===========================================  ==========================================
key                folder under the data root                   read by
=================  ===========================================  ==========================================
tinyimagenet       tiny-imagenet-200/ (val/ via annotations)    zsrbench (readers.py)
cifar10            cifar-10-batches-py/                         zsrbench (same files as torchvision)
cifar100           cifar-100-python/                            zsrbench (same files as torchvision)
stl10              stl10_binary/                                zsrbench (same files as torchvision)
sun397             SUN397/                                      zsrbench (sorted; files as torchvision)
food101            food-101/                                    torchvision.datasets.Food101
oxford_pets        oxford-iiit-pet/                             torchvision.datasets.OxfordIIITPet
flowers102         flowers-102/                                 zsrbench (same files as torchvision)
dtd                dtd/dtd/                                     torchvision.datasets.DTD
eurosat            eurosat/2750/                                torchvision.datasets.EuroSAT
fgvc_aircraft      fgvc-aircraft-2013b/                         torchvision.datasets.FGVCAircraft
imagenet           imagenet/val/<wnid>/ (or ImageNet/val/)      zsrbench (ImageFolder layout)
caltech101         caltech101/101_ObjectCategories/             torchvision.datasets.Caltech101
caltech256         caltech256/256_ObjectCategories/             torchvision.datasets.Caltech256
stanford_cars      stanford_cars/ (devkit or cars_annos.mat)    torchvision.datasets.StanfordCars / zsrbench
pcam               pcam/                                        torchvision.datasets.PCAM (needs h5py)
=================  ===========================================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

from torch.utils.data import Dataset

from zsrbench.data import naming
from zsrbench.data import readers as rd
from zsrbench.data.base import DatasetBuilder, DatasetInfo, EvalSet, eval_transform
from zsrbench.data.layout import (
    BrokenImageError,
    DataLayoutError,
    DataMissingError,
    data_root,
    first_existing,
    layout_error,
    require_folder,
    require_paths,
)
from zsrbench.data.safe_pickle import UnsafePickleError
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS

T = TypeVar("T")
PHOTO = "This is a photo of a {}"

TGA16_KEYS = (
    "tinyimagenet", "cifar10", "cifar100", "stl10", "sun397", "food101", "oxford_pets", "flowers102",
    "dtd", "eurosat", "fgvc_aircraft", "imagenet", "caltech101", "caltech256", "stanford_cars", "pcam",
)


@dataclass(frozen=True)
class Source:
    """Where a dataset lives under the data root, how many classes it must have and how to get it."""

    folder: str  # relative to the data root (the first choice, where there are alternatives)
    n_classes: int
    how_to_obtain: str
    reader: str  # what reads it, for descriptions
    n_images: str  # the size of the protocol split, for descriptions


_TV = "or let torchvision fetch it: pass --download (download=True; uses {cls})"
SOURCES: dict[str, Source] = {
    "tinyimagenet": Source(
        "tiny-imagenet-200", 200,
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the data root (giving "
        "tiny-imagenet-200/ with wnids.txt, words.txt, train/, val/), or pass --download; val/ is read through "
        "val/val_annotations.txt, no re-organising needed",
        "zsrbench", "10,000"),
    "cifar10": Source(
        "cifar-10-batches-py", 10,
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into the data root, "
        + _TV.format(cls="torchvision.datasets.CIFAR10"), "zsrbench", "10,000"),
    "cifar100": Source(
        "cifar-100-python", 100,
        "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into the data root, "
        + _TV.format(cls="torchvision.datasets.CIFAR100"), "zsrbench", "10,000"),
    "stl10": Source(
        "stl10_binary", 10,
        "download http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz and extract it into the data root "
        "(test_X.bin and test_y.bin are needed), " + _TV.format(cls="torchvision.datasets.STL10"),
        "zsrbench", "8,000"),
    "sun397": Source(
        "SUN397", 397,
        "download http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz and extract it into the data root "
        "(giving SUN397/ClassName.txt and SUN397/a/abbey/...), " + _TV.format(cls="torchvision.datasets.SUN397"),
        "zsrbench", "108,754"),
    "food101": Source(
        "food-101", 101,
        "download http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz and extract it into the data root (giving "
        "food-101/meta/ and food-101/images/), " + _TV.format(cls="torchvision.datasets.Food101"),
        "torchvision.datasets.Food101", "25,250"),
    "oxford_pets": Source(
        "oxford-iiit-pet", 37,
        "download images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ and "
        "extract both into <data root>/oxford-iiit-pet/, " + _TV.format(cls="torchvision.datasets.OxfordIIITPet"),
        "torchvision.datasets.OxfordIIITPet", "3,669"),
    "flowers102": Source(
        "flowers-102", 102,
        "download 102flowers.tgz, imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/"
        "flowers/102/ into <data root>/flowers-102/ and extract the tgz there (giving jpg/), "
        + _TV.format(cls="torchvision.datasets.Flowers102"), "zsrbench", "6,149"),
    "dtd": Source(
        "dtd/dtd", 47,
        "download https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz and extract it into "
        "<data root>/dtd/ (giving dtd/dtd/images/ and dtd/dtd/labels/), "
        + _TV.format(cls="torchvision.datasets.DTD"), "torchvision.datasets.DTD", "1,880"),
    "eurosat": Source(
        "eurosat/2750", 10,
        "download the RGB EuroSAT.zip (https://github.com/phelber/eurosat) and unzip it into <data root>/eurosat/ "
        "(giving eurosat/2750/AnnualCrop/...), " + _TV.format(cls="torchvision.datasets.EuroSAT"),
        "torchvision.datasets.EuroSAT", "27,000"),
    "fgvc_aircraft": Source(
        "fgvc-aircraft-2013b", 100,
        "download https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz and "
        "extract it into the data root, " + _TV.format(cls="torchvision.datasets.FGVCAircraft"),
        "torchvision.datasets.FGVCAircraft", "3,333"),
    "imagenet": Source(
        "imagenet", 1000,
        "ImageNet needs a login at https://image-net.org: put ILSVRC2012_img_val.tar and "
        "ILSVRC2012_devkit_t12.tar.gz into <data root>/imagenet/ and pass --download once (torchvision."
        "datasets.ImageNet then sorts the 50,000 val images into imagenet/val/<wnid>/), or provide any "
        "imagenet/val/<wnid>/*.JPEG folder tree of the 1000 classes",
        "zsrbench", "50,000"),
    "caltech101": Source(
        "caltech101/101_ObjectCategories", 101,
        "download caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 and extract "
        "101_ObjectCategories.tar.gz into <data root>/caltech101/, "
        + _TV.format(cls="torchvision.datasets.Caltech101"), "torchvision.datasets.Caltech101", "8,677"),
    "caltech256": Source(
        "caltech256/256_ObjectCategories", 257,
        "download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048 and extract it into "
        "<data root>/caltech256/, " + _TV.format(cls="torchvision.datasets.Caltech256"),
        "torchvision.datasets.Caltech256", "30,607"),
    "stanford_cars": Source(
        "stanford_cars", 196,
        "the original site (ai.stanford.edu/~jkrause/cars) is offline and torchvision cannot download it; get "
        "a copy of the dataset (e.g. a Kaggle mirror) and lay it out as torchvision.datasets.StanfordCars "
        "expects: stanford_cars/devkit/cars_meta.mat, stanford_cars/cars_test_annos_withlabels.mat, "
        "stanford_cars/cars_test/ (or stanford_cars/cars_annos.mat with stanford_cars/car_ims/)",
        "torchvision.datasets.StanfordCars", "8,041"),
    "pcam": Source(
        "pcam", 2,
        "download camelyonpatch_level_2_split_test_x.h5.gz and camelyonpatch_level_2_split_test_y.h5.gz from "
        "https://github.com/basveeling/pcam and gunzip them into <data root>/pcam/, or let torchvision fetch "
        "them: pass --download (uses torchvision.datasets.PCAM, which needs the gdown package); reading needs "
        "h5py", "torchvision.datasets.PCAM", "32,768"),
}


def _info(key: str, title: str, split: str, *, templates: tuple[str, ...] = (PHOTO,), native: int | None = None,
          classnames: tuple[str, ...] = (), fixed_prompts: tuple[str, ...] | None = None) -> DatasetInfo:
    return DatasetInfo(
        name=key, title=title, classnames=classnames, templates=templates, split=split,
        input_mode="native" if native else "crop", native_size=native, fixed_prompts=fixed_prompts,
        expected_classes=SOURCES[key].n_classes,
    )


INFOS: dict[str, DatasetInfo] = {
    "tinyimagenet": _info("tinyimagenet", "Tiny-ImageNet", "val", native=64),
    "cifar10": _info("cifar10", "CIFAR-10", "test", native=32),
    "cifar100": _info("cifar100", "CIFAR-100", "test", native=32),
    "stl10": _info("stl10", "STL-10", "test", native=96, classnames=naming.STL10_CLASSES),
    "sun397": _info("sun397", "SUN397", "all"),
    "food101": _info("food101", "Food101", "test", templates=("A photo of {}, a type of food.",)),
    "oxford_pets": _info("oxford_pets", "Oxford-IIIT Pets", "test", templates=("A photo of a {}, a type of pet.",)),
    "flowers102": _info(
        "flowers102", "Flowers102", "test", templates=("A photo of a {}, a type of flower.",),
        classnames=tuple(naming.normalise(n, naming.PROMPT_CHARS) for n in naming.flowers102_classes())),
    "dtd": _info("dtd", "DTD", "test1", templates=("A surface with a {} texture.",)),
    "eurosat": _info(
        "eurosat", "EuroSAT", "all", templates=("A centered satellite photo of {}.",),
        classnames=tuple(naming.EUROSAT_PHRASES.values())),
    "fgvc_aircraft": _info(
        "fgvc_aircraft", "FGVC-Aircraft", "test", templates=("A photo of a {}, a type of aircraft.",)),
    "imagenet": _info("imagenet", "ImageNet", "val", classnames=tuple(n for _, n in naming.imagenet_classes())),
    "caltech101": _info("caltech101", "Caltech-101", "all"),
    "caltech256": _info("caltech256", "Caltech-256", "all", templates=("A photo of a {}.",)),
    "stanford_cars": _info("stanford_cars", "Stanford Cars", "test", templates=("A photo of a {}.",)),
    "pcam": _info("pcam", "PCAM", "test", classnames=naming.PCAM_CLASSNAMES, fixed_prompts=naming.PCAM_PROMPTS),
}


# --- the build context ------------------------------------------------------------------------------------


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
        return self.root / (rel or SOURCES[self.key].folder)

    def need_folder(self, folder: Path) -> Path:
        return require_folder(folder, self.title, self.how)

    def need(self, *paths: Path) -> None:
        require_paths(list(paths), self.title, self.how)

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


# --- readers, one per dataset -----------------------------------------------------------------------------


def _tinyimagenet(c: Ctx) -> Read:
    from torchvision.datasets.utils import download_and_extract_archive

    folder = c.folder()
    url = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    c.fetch(folder, [folder], lambda: download_and_extract_archive(url, str(c.root)))
    c.need_folder(folder)
    c.need(folder / "wnids.txt", folder / "words.txt", folder / c.split)
    wnids = sorted({ln.strip() for ln in (folder / "wnids.txt").read_text().splitlines() if ln.strip()})
    words = naming.read_words(folder / "words.txt", wnids)
    if len(words) != len(wnids):
        missing = [w for w in wnids if w not in words]
        raise c.error(folder / "words.txt", f"no entry for {len(missing)} wnids of wnids.txt, e.g. {missing[0]}")
    if c.split == "train":
        files, labels = _class_folder_samples(c, folder / "train", wnids, recursive=True)
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
        _all_exist(c, files, images)
        return files, [index[w] for _, w in rows], "val/val_annotations.txt + val/images"
    if any((val / w).is_dir() for w in wnids):  # already re-organised into class folders
        files, labels = _class_folder_samples(c, val, wnids, recursive=True)
        return files, labels, "val/<wnid>/"
    raise c.error(val, "expected val/val_annotations.txt with val/images/, or class folders val/<wnid>/")


def _class_folder_samples(c: Ctx, folder: Path, classes: list[str], recursive: bool = False
                          ) -> tuple[list[Path], list[int]]:
    c.need(folder)
    missing = [name for name in classes if not (folder / name).is_dir()]
    if missing:
        raise c.error(folder, f"{len(missing)} of {len(classes)} class folders are missing, e.g. {missing[0]}/")
    _require_filled(c, folder, classes, recursive=recursive)
    return rd.folder_samples(folder, classes, recursive=recursive)


def _require_filled(c: Ctx, folder: Path, classes: list[str], recursive: bool = False) -> None:
    """Every class folder ``folder/<class>`` holds at least one image."""
    empty = [name for name in classes if not rd.has_images(folder / name, recursive=recursive)]
    if empty:
        raise c.error(folder, f"{len(empty)} of {len(classes)} class folders hold no images ({_some(empty, '/')}): "
                              "the copy is partial; re-copy or re-extract these folders")


def _some(names: list[str], suffix: str = "", n: int = 5) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(name + suffix for name in names[:n]) + more


def _all_exist(c: Ctx, files: list[Path], where: Path) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise c.error(where, f"{len(missing)} of {len(files)} listed images are missing, e.g. {missing[0]}")


def _cifar(c: Ctx, test_file: str, meta_file: str, names_key: str, tv_class: str) -> Read:
    import torchvision.datasets as tvd

    folder = c.folder()
    c.fetch(folder, [folder / test_file, folder / meta_file],
            lambda: getattr(tvd, tv_class)(str(c.root), train=False, download=True))
    c.need_folder(folder)
    c.need(folder / test_file, folder / meta_file)
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
    return _cifar(c, "test_batch", "batches.meta", "label_names", "CIFAR10")


def _cifar100(c: Ctx) -> Read:
    return _cifar(c, "test", "meta", "fine_label_names", "CIFAR100")


def _stl10(c: Ctx) -> Read:
    from torchvision.datasets import STL10

    folder = c.folder()
    x_path, y_path, names_path = folder / "test_X.bin", folder / "test_y.bin", folder / "class_names.txt"
    c.fetch(folder, [x_path, y_path], lambda: STL10(str(c.root), split="test", download=True))
    c.need_folder(folder)
    c.need(x_path, y_path)
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
    from torchvision.datasets import SUN397

    folder = c.folder()
    c.fetch(folder, [folder / "ClassName.txt"], lambda: SUN397(str(c.root), download=True))
    c.need_folder(folder)
    c.need(folder / "ClassName.txt")
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

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
        c.need(folder / "meta" / "test.json", folder / "images")
    ds = c.call(folder, lambda: Food101(str(c.root), split="test", transform=c.transform, download=c.download))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "meta/test.json (sorted keys)"})


def _oxford_pets(c: Ctx) -> Read:
    from torchvision.datasets import OxfordIIITPet

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
        c.need(folder / "annotations" / "test.txt", folder / "images")
    ds = c.call(folder, lambda: OxfordIIITPet(
        str(c.root), split="test", target_types="category", transform=c.transform, download=c.download))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "annotations/test.txt (image names)"})


def _flowers102(c: Ctx) -> Read:
    from torchvision.datasets import Flowers102

    folder = c.folder()
    needed = [folder / "jpg", folder / "imagelabels.mat", folder / "setid.mat"]
    c.fetch(folder, needed, lambda: Flowers102(str(c.root), split="test", download=True))
    c.need_folder(folder)
    c.need(*needed)
    try:
        ids, labels = rd.flowers102_split(folder / "setid.mat", folder / "imagelabels.mat", "tstid")
    except Exception as exc:
        raise c.error(folder, f"cannot read setid.mat / imagelabels.mat: {type(exc).__name__}: {exc}") from exc
    files = [folder / "jpg" / f"image_{i:05d}.jpg" for i in ids]
    _all_exist(c, files, folder / "jpg")
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in naming.flowers102_classes()]
    extra = {"classnames_from": "zsrbench/data/classnames/flowers102.txt"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _dtd(c: Ctx) -> Read:
    from torchvision.datasets import DTD

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
        c.need(folder / "labels" / "test1.txt", folder / "images")
    ds = c.call(folder, lambda: DTD(
        str(c.root), split="test", partition=1, transform=c.transform, download=c.download))
    names = [naming.normalise(n, naming.PROMPT_CHARS) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "labels/test1.txt", "partition": 1})


def _eurosat(c: Ctx) -> Read:
    from torchvision.datasets import EuroSAT

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
    if folder.is_dir():  # torchvision's ImageFolder would only say "Found no valid file for the classes ..."
        _require_filled(c, folder, rd.class_folders(folder))
    ds = c.call(folder, lambda: EuroSAT(str(c.root), transform=c.transform, download=c.download))
    if list(ds.classes) != sorted(naming.EUROSAT_PHRASES):
        raise c.error(folder, f"class folders {list(ds.classes)} are not the 10 EuroSAT classes "
                              f"{sorted(naming.EUROSAT_PHRASES)}")
    names = [naming.EUROSAT_PHRASES[f] for f in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "zsrbench EuroSAT phrases (by class folder)"})


def _fgvc_aircraft(c: Ctx) -> Read:
    from torchvision.datasets import FGVCAircraft

    folder = c.folder()
    data = folder / "data"
    if not c.download:
        c.need_folder(folder)
        c.need(data / "variants.txt", data / "images_variant_test.txt", data / "images")
    ds = c.call(folder, lambda: FGVCAircraft(
        str(c.root), split="test", annotation_level="variant", transform=c.transform, download=c.download))
    names = [naming.aircraft_name(n) for n in ds.classes]
    return Read(ds, names, folder, {"classnames_from": "data/variants.txt"})


def _imagenet(c: Ctx) -> Read:
    from torchvision.datasets import ImageNet

    folder = first_existing(c.root, ("imagenet", "ImageNet"))
    val = folder / "val"
    c.fetch(folder, [val], lambda: ImageNet(str(folder), split="val"))  # only sorts the archives the user put there
    c.need_folder(folder)
    c.need(val)
    wnids = [w for w, _ in naming.imagenet_classes()]
    present = set(rd.class_folders(val))
    if not present:
        n_flat = len(rd.images_in(val))
        raise c.error(val, f"no class folders (val/ holds {n_flat} images directly): the val images must be "
                           "sorted into val/<wnid>/ folders")
    unknown = sorted(present - set(wnids))
    if unknown:
        raise c.error(val, f"{len(unknown)} folders are not ImageNet-1k wnids, e.g. {unknown[0]}/")
    files, labels = _class_folder_samples(c, val, wnids)
    names = [n for _, n in naming.imagenet_classes()]
    extra = {"classnames_from": "zsrbench/data/classnames/imagenet.txt (CLIP names)"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _caltech101(c: Ctx) -> Read:
    from torchvision.datasets import Caltech101

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
    ds = c.call(folder, lambda: Caltech101(
        str(c.root), target_type="category", transform=c.transform, download=c.download))
    _require_filled(c, folder, list(ds.categories))
    names = [naming.normalise(n) for n in ds.categories]
    return Read(ds, names, folder, {"classnames_from": "101_ObjectCategories folders (no BACKGROUND_Google)"})


def _caltech256(c: Ctx) -> Read:
    from torchvision.datasets import Caltech256

    folder = c.folder()
    if not c.download:
        c.need_folder(folder)
    ds = c.call(folder, lambda: Caltech256(str(c.root), transform=c.transform, download=c.download))
    _require_filled(c, folder, list(ds.categories))
    names = [naming.caltech256_name(n) for n in ds.categories]
    return Read(ds, names, folder, {"classnames_from": "256_ObjectCategories folders (incl. 257.clutter)"})


def _stanford_cars(c: Ctx) -> Read:
    folder = c.folder()
    c.need_folder(folder)
    if (folder / "devkit").is_dir():
        from torchvision.datasets import StanfordCars

        c.need(folder / "devkit" / "cars_meta.mat", folder / "cars_test_annos_withlabels.mat", folder / "cars_test")
        ds = c.call(folder, lambda: StanfordCars(str(c.root), split="test", transform=c.transform))
        classes, layout = list(ds.classes), "devkit"
    elif (folder / "cars_annos.mat").is_file():
        try:
            rel, labels, classes = rd.cars_annos(folder / "cars_annos.mat", test=True)
        except Exception as exc:
            raise c.error(folder, f"cannot read cars_annos.mat: {type(exc).__name__}: {exc}") from exc
        files = [folder / r for r in rel]
        _all_exist(c, files, folder)
        ds, layout = rd.FileListDataset(files, labels, c.transform), "cars_annos.mat"
    else:
        raise c.error(folder, "expected devkit/ with cars_test/ and cars_test_annos_withlabels.mat (the "
                              "torchvision layout), or cars_annos.mat with car_ims/")
    names = [naming.car_name(n) for n in classes]
    return Read(ds, names, folder, {"layout": layout, "classnames_from": "class_names of the .mat (year dropped)"})


def _pcam(c: Ctx) -> Read:
    from torchvision.datasets import PCAM

    folder = c.folder()
    try:
        import h5py  # noqa: F401
    except ImportError as exc:
        raise ZsrError("PCAM is stored as HDF5 files; reading them needs h5py: pip install h5py") from exc
    if not c.download:
        c.need_folder(folder)
        c.need(folder / "camelyonpatch_level_2_split_test_x.h5", folder / "camelyonpatch_level_2_split_test_y.h5")
    ds = c.call(folder, lambda: PCAM(str(c.root), split="test", transform=c.transform, download=c.download))
    return Read(ds, list(naming.PCAM_CLASSNAMES), folder, {"classnames_from": "zsrbench (fixed PCAM prompts)"})


READERS: dict[str, Callable[[Ctx], Read]] = {
    "tinyimagenet": _tinyimagenet, "cifar10": _cifar10, "cifar100": _cifar100, "stl10": _stl10,
    "sun397": _sun397, "food101": _food101, "oxford_pets": _oxford_pets, "flowers102": _flowers102,
    "dtd": _dtd, "eurosat": _eurosat, "fgvc_aircraft": _fgvc_aircraft, "imagenet": _imagenet,
    "caltech101": _caltech101, "caltech256": _caltech256, "stanford_cars": _stanford_cars, "pcam": _pcam,
}
SPLITS: dict[str, tuple[str, ...]] = {"tinyimagenet": ("val", "train")}  # others: only the protocol split


# --- building and registration ----------------------------------------------------------------------------


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
    path = data_root(root, info.title, SOURCES[key].how_to_obtain)
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
        raise c.error(read.folder, f"{len(empty)} of {len(read.classnames)} classes have no images "
                                   f"({_some(empty)}): the copy is partial or a different version of the dataset")


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
