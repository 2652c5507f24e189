"""The 16 datasets of the ``tga16`` protocol as data: their keys (:data:`TGA16_KEYS`), how to obtain each one
and how torchvision downloads it (:data:`SOURCES`), and what each one is for prompting (:data:`INFOS`: title,
split, templates, the class names zsrbench fixes).

Where each dataset lies under the data root is :data:`zsrbench.data.layout.LAYOUTS`; ``docs/data.md`` is
generated from these tables (:mod:`zsrbench.data.prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zsrbench.data import naming
from zsrbench.data.base import DatasetInfo
from zsrbench.data.fetch import Fetch
from zsrbench.data.layout import LAYOUTS

PHOTO = "This is a photo of a {}"

TGA16_KEYS = (
    "tinyimagenet", "cifar10", "cifar100", "stl10", "sun397", "food101", "oxford_pets", "flowers102",
    "dtd", "eurosat", "fgvc_aircraft", "imagenet", "caltech101", "caltech256", "stanford_cars", "pcam",
)


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
