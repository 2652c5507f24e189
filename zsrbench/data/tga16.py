"""The 16 zero-shot datasets of the ``tga16`` protocol, read from a local data root.

Every dataset lives under its data root in the layout torchvision uses. Building one reads only its metadata
(file lists, labels, class names); images are decoded lazily, except the first and last, which are read once to
catch a broken copy early. ``download=True`` uses torchvision's own download where there is one (:class:`Fetch`;
``zsrbench data prepare`` does the same, see :mod:`zsrbench.data.prepare`). A class with no images (an empty
class folder) is a wrong layout; an image that cannot be decoded raises
:class:`~zsrbench.data.layout.BrokenImageError` naming the file when it is read, and ``skip_broken=True``
decodes every image at build time and leaves the broken ones out (``EvalSet.skipped``).

Class names come from each dataset's own metadata where it has any and are normalised as the TGA-ZSR reference
code does (see :mod:`zsrbench.data.naming`); so for most datasets the registered (static) ``DatasetInfo`` has
no class names and the ``EvalSet.info`` that ``build`` returns carries them. Static names exist only where
zsrbench fixes them: Flowers102 and ImageNet (data files in ``classnames/``), EuroSAT's phrases, PCAM's
prompts and STL-10.

Where each dataset lies under the data root is the table :data:`zsrbench.data.layout.LAYOUTS`; how to obtain
it, and how torchvision downloads it where it can, is :data:`SOURCES` (``docs/data.md`` is generated from both).
``--data-root`` is one folder for all datasets, or a template such as ``/data/{dataset}``
(:func:`zsrbench.data.layout.dataset_root`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

from torch.utils.data import Dataset

from zsrbench.data import naming
from zsrbench.data import readers as rd
from zsrbench.data.base import DatasetBuilder, DatasetInfo, EvalSet, eval_transform
from zsrbench.data.layout import (
    LAYOUTS,
    BrokenImageError,
    DataLayoutError,
    DataMissingError,
    data_root,
    dataset_root,
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


@dataclass(frozen=True)
class Source:
    """How to obtain one dataset, how many classes it must have, and facts for descriptions and docs.

    Its folder and the files its reader requires are in :data:`zsrbench.data.layout.LAYOUTS`.
    """

    key: str
    n_classes: int
    manual: str  # how to get it by hand and where to put it
    reader: str  # what reads it, for descriptions
    n_images: str  # the size of the protocol split, for descriptions
    size: str  # what there is to download, roughly
    terms: str  # where it comes from and on what terms
    fetch: Fetch | None = None  # how torchvision downloads it; None: it cannot

    @property
    def folder(self) -> str:
        """The dataset's folder, relative to its data root."""
        return LAYOUTS[self.key].folder

    @property
    def how_to_obtain(self) -> str:
        if self.fetch is None:
            return self.manual
        return (f"{self.manual}; or let torchvision download it: zsrbench data prepare --data-root DIR --datasets "
                f"{self.key} (or pass --download to zsrbench run)")


def _tv(cls: str, **kwargs: Any) -> Fetch:
    return Fetch(cls, tuple(kwargs.items()))


SOURCES: dict[str, Source] = {s.key: s for s in (
    Source(
        "tinyimagenet", 200,
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the data root (giving "
        "tiny-imagenet-200/ with wnids.txt, words.txt, train/, val/); val/ is read through val/val_annotations.txt, "
        "no re-organising needed",
        "zsrbench", "10,000", "≈ 240 MB zip",
        "Stanford CS231n (images from ImageNet; ImageNet's non-commercial research terms)",
        Fetch(url="http://cs231n.stanford.edu/tiny-imagenet-200.zip", md5_checked=False, folder="tiny-imagenet-200")),
    Source(
        "cifar10", 10,
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it into the data root",
        "zsrbench", "10,000", "≈ 170 MB", "https://www.cs.toronto.edu/~kriz/cifar.html (A. Krizhevsky)",
        _tv("CIFAR10", train=False)),
    Source(
        "cifar100", 100,
        "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it into the data root",
        "zsrbench", "10,000", "≈ 170 MB", "https://www.cs.toronto.edu/~kriz/cifar.html (A. Krizhevsky)",
        _tv("CIFAR100", train=False)),
    Source(
        "stl10", 10,
        "download http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz and extract it into the data root "
        "(test_X.bin and test_y.bin are needed)",
        "zsrbench", "8,000", "≈ 2.6 GB (all splits)",
        "https://cs.stanford.edu/~acoates/stl10/ (images from ImageNet)", _tv("STL10", split="test")),
    Source(
        "sun397", 397,
        "download http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz and extract it into the data root "
        "(giving SUN397/ClassName.txt and SUN397/a/abbey/...)",
        "zsrbench", "108,754", "≈ 37 GB", "https://vision.princeton.edu/projects/2010/SUN/ (research use)",
        _tv("SUN397")),
    Source(
        "food101", 101,
        "download http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz and extract it into the data root (giving "
        "food-101/meta/ and food-101/images/)",
        "torchvision.datasets.Food101", "25,250", "≈ 5 GB",
        "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ (ETH Zürich; images from foodspotting.com)",
        _tv("Food101", split="test")),
    Source(
        "oxford_pets", 37,
        "download images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ and "
        "extract both into <data root>/oxford-iiit-pet/",
        "torchvision.datasets.OxfordIIITPet", "3,669", "≈ 800 MB",
        "https://www.robots.ox.ac.uk/~vgg/data/pets/ (annotations CC BY-SA 4.0; images keep their owners' rights)",
        _tv("OxfordIIITPet", split="test", target_types="category")),
    Source(
        "flowers102", 102,
        "download 102flowers.tgz, imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/"
        "flowers/102/ into <data root>/flowers-102/ and extract the tgz there (giving jpg/)",
        "zsrbench", "6,149", "≈ 330 MB", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (VGG, Oxford)",
        _tv("Flowers102", split="test")),
    Source(
        "dtd", 47,
        "download https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz and extract it into "
        "<data root>/dtd/ (giving dtd/dtd/images/ and dtd/dtd/labels/)",
        "torchvision.datasets.DTD", "1,880", "≈ 600 MB",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/ (research use)", _tv("DTD", split="test", partition=1)),
    Source(
        "eurosat", 10,
        "download the RGB EuroSAT.zip (https://github.com/phelber/eurosat) and unzip it into <data root>/eurosat/ "
        "(giving eurosat/2750/AnnualCrop/...)",
        "torchvision.datasets.EuroSAT", "27,000", "≈ 90 MB", "https://github.com/phelber/eurosat (MIT licence)",
        _tv("EuroSAT")),
    Source(
        "fgvc_aircraft", 100,
        "download https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz and "
        "extract it into the data root",
        "torchvision.datasets.FGVCAircraft", "3,333", "≈ 2.8 GB",
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (non-commercial research use only)",
        Fetch("FGVCAircraft", (("split", "test"), ("annotation_level", "variant")), md5_checked=False,
              url="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
              folder="fgvc-aircraft-2013b")),
    Source(
        "imagenet", 1000,
        "ImageNet needs a login at https://image-net.org: put ILSVRC2012_img_val.tar and "
        "ILSVRC2012_devkit_t12.tar.gz into <data root>/imagenet/ and run zsrbench data prepare --data-root DIR "
        "--datasets imagenet (torchvision.datasets.ImageNet extracts and sorts the 50,000 val images into "
        "imagenet/val/<wnid>/); a flat val/ folder of the 50,000 JPEGs (e.g. Kaggle's ILSVRC/Data/CLS-LOC/val/ with "
        "LOC_val_solution.csv) is sorted by the same command; or provide any imagenet/val/<wnid>/*.JPEG tree of "
        "the 1000 classes",
        "zsrbench", "50,000", "≈ 6.4 GB (val)",
        "https://image-net.org (login; non-commercial research and education terms), or the Kaggle "
        "ImageNet Object Localization Challenge (same terms)"),
    Source(
        "caltech101", 101,
        "download caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02 and extract "
        "101_ObjectCategories.tar.gz into <data root>/caltech101/",
        "torchvision.datasets.Caltech101", "8,677", "≈ 140 MB",
        "https://data.caltech.edu/records/mzrjq-6wc02 (CaltechDATA; see the record for its licence)",
        Fetch("Caltech101", (("target_type", "category"),), unchecked_leftovers="caltech101/caltech-101")),
    Source(
        "caltech256", 257,
        "download 256_ObjectCategories.tar from https://data.caltech.edu/records/nyy15-4j048 and extract it into "
        "<data root>/caltech256/",
        "torchvision.datasets.Caltech256", "30,607", "≈ 1.2 GB",
        "https://data.caltech.edu/records/nyy15-4j048 (CaltechDATA; see the record for its licence)",
        _tv("Caltech256")),
    Source(
        "stanford_cars", 196,
        "the original site (ai.stanford.edu/~jkrause/cars) is offline and torchvision cannot download it; get "
        "a copy of the dataset (e.g. a Kaggle mirror that includes cars_test_annos_withlabels.mat) and lay it out "
        "as torchvision.datasets.StanfordCars expects: stanford_cars/devkit/cars_meta.mat, "
        "stanford_cars/cars_test_annos_withlabels.mat, stanford_cars/cars_test/ (or stanford_cars/cars_annos.mat "
        "with stanford_cars/car_ims/)",
        "torchvision.datasets.StanfordCars", "8,041", "≈ 1.9 GB",
        "J. Krause et al., Stanford (site offline; mirrors; non-commercial research use)"),
    Source(
        "pcam", 2,
        "download camelyonpatch_level_2_split_test_x.h5.gz and camelyonpatch_level_2_split_test_y.h5.gz from "
        "https://github.com/basveeling/pcam and gunzip them into <data root>/pcam/ (reading needs h5py)",
        "torchvision.datasets.PCAM", "32,768", "≈ 0.8 GB (test split)",
        "https://github.com/basveeling/pcam (CC0)",
        Fetch("PCAM", (("split", "test"),), needs="gdown (Google Drive) and h5py")),
)}


def download(key: str, root: str | Path) -> object:
    """Download dataset ``key`` of tga16 into the data root ``root`` through torchvision (a ZsrError if it cannot)."""
    fetch = SOURCES[key].fetch
    if fetch is None:
        raise ZsrError(f"{INFOS[key].title} cannot be downloaded by torchvision. How to obtain it: "
                       f"{SOURCES[key].how_to_obtain}")
    return fetch.run(Path(root))


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


# --- readers, one per dataset -----------------------------------------------------------------------------


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
    _all_exist(c, files, folder / "jpg")
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
    _require_filled(c, folder, rd.class_folders(folder))  # torchvision would only say "Found no valid file ..."
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
    files, labels = _class_folder_samples(c, val, wnids)
    names = [n for _, n in naming.imagenet_classes()]
    extra = {"classnames_from": "zsrbench/data/classnames/imagenet.txt (CLIP names)"}
    return Read(rd.FileListDataset(files, labels, c.transform), names, folder, extra)


def _caltech101(c: Ctx) -> Read:
    from torchvision.datasets import Caltech101

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: Caltech101(str(c.root), target_type="category", transform=c.transform))
    _require_filled(c, folder, list(ds.categories))
    names = [naming.normalise(n) for n in ds.categories]
    return Read(ds, names, folder, {"classnames_from": "101_ObjectCategories folders (no BACKGROUND_Google)"})


def _caltech256(c: Ctx) -> Read:
    from torchvision.datasets import Caltech256

    c.fetch_layout()
    folder = c.need_layout()
    ds = c.call(folder, lambda: Caltech256(str(c.root), transform=c.transform))
    _require_filled(c, folder, list(ds.categories))
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
