"""Tiny copies of the on-disk layouts of the tga16 datasets, for tests.

Each ``make_<key>(root)`` writes the files a real download produces (same names, same formats: pickled CIFAR
batches, STL-10 binaries, .mat and .h5 files, JPEG trees and the metadata text files) with a handful of tiny
images, and returns a :class:`Fake` saying what a correct reader must find. Every image is filled with a colour
that encodes its label (:func:`color`), so a test can check that each image arrives with the right label
(:func:`decode_label`), whatever the order the reader lists them in.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

JPEG_SIZE = (10, 8)  # width, height of the images of the "crop" datasets


@dataclass
class Fake:
    key: str
    n_images: int
    n_classes: int
    names: dict[int, str] = field(default_factory=dict)  # label -> expected class name, for a few labels


# --- images that carry their label ----------------------------------------------------------------------------


def color(label: int) -> tuple[int, int, int]:
    """A colour that encodes ``label`` (0..1023) in steps of 8, robust to JPEG and resizing."""
    return ((label % 32) * 8 + 4, (label // 32) * 8 + 4, 128)


def decode_label(image) -> int:
    """The label encoded in an image tensor 3×H×W in [0,1] (read at its centre)."""
    _, h, w = image.shape
    r, g = (float(v) * 255 for v in image[:2, h // 2, w // 2])
    return round((r - 4) / 8) + 32 * round((g - 4) / 8)


def label_array(label: int, size: int) -> np.ndarray:
    return np.broadcast_to(np.array(color(label), dtype=np.uint8), (size, size, 3)).copy()


def save_jpeg(path: Path, label: int, size: tuple[int, int] = JPEG_SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color(label)).save(path, format="JPEG", quality=95, subsampling=0)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def synthetic(real: list[str], n: int, pattern: str) -> list[str]:
    """``real`` names followed by generated ones up to ``n`` in all."""
    return real + [pattern.format(i=i) for i in range(len(real), n)]


# --- native-resolution datasets -------------------------------------------------------------------------------

TINY_REAL = {
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n02509815": "lesser panda, red panda, panda, bear cat, cat bear, Ailurus fulgens",
    "n03902125": "pay-phone, pay-station",
}


def tiny_wnids() -> list[str]:
    return sorted(list(TINY_REAL) + [f"n0990{i:04d}" for i in range(200 - len(TINY_REAL))])


def make_tinyimagenet(root: Path, reorganised: bool = False, per_class: int = 2) -> Fake:
    base = root / "tiny-imagenet-200"
    wnids = tiny_wnids()
    shuffled = wnids[:]
    random.Random(0).shuffle(shuffled)  # wnids.txt is not sorted; the class index is the sorted position
    write_lines(base / "wnids.txt", shuffled)
    words = {w: TINY_REAL.get(w, f"thing_{w[-4:]}, other thing") for w in wnids}
    write_lines(base / "words.txt", ["n00001740\tentity"] + [f"{w}\t{words[w]}" for w in wnids])
    rows = []
    for label, wnid in enumerate(wnids):
        save_jpeg(base / "train" / wnid / "images" / f"{wnid}_0.JPEG", label, (64, 64))
        write_lines(base / "train" / wnid / f"{wnid}_boxes.txt", [f"{wnid}_0.JPEG\t0\t0\t63\t63"])
        for _ in range(per_class):
            name = f"val_{len(rows)}.JPEG"
            rows.append(f"{name}\t{wnid}\t0\t0\t63\t63")
            folder = base / "val" / wnid / "images" if reorganised else base / "val" / "images"
            save_jpeg(folder / name, label, (64, 64))
    write_lines(base / "val" / "val_annotations.txt", rows)
    (base / "test" / "images").mkdir(parents=True, exist_ok=True)
    names = {wnids.index("n01443537"): "goldfish", wnids.index("n01629819"): "european fire salamander",
             wnids.index("n02509815"): "lesser panda", wnids.index("n03902125"): "pay phone"}
    return Fake("tinyimagenet", 200 * per_class, 200, names)


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_batch(labels: list[int], key: str) -> dict:
    data = np.stack([label_array(y, 32).transpose(2, 0, 1).reshape(-1) for y in labels])
    return {"batch_label": "testing batch 1 of 1", key: labels, "data": data,
            "filenames": [f"img_{i}.png" for i in range(len(labels))]}


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10(root: Path, per_class: int = 3) -> Fake:
    base = root / "cifar-10-batches-py"
    labels = [y for _ in range(per_class) for y in range(10)]
    _pickle(base / "test_batch", _cifar_batch(labels, "labels"))
    _pickle(base / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 10000, "num_vis": 3072})
    return Fake("cifar10", len(labels), 10, {0: "airplane", 9: "truck"})


def make_cifar100(root: Path, per_class: int = 2) -> Fake:
    base = root / "cifar-100-python"
    labels = [y for y in range(100) for _ in range(per_class)]
    batch = _cifar_batch(labels, "fine_labels")
    batch["coarse_labels"] = [y // 5 for y in labels]
    _pickle(base / "test", batch)
    fine = synthetic(["apple", "aquarium_fish", "baby"], 100, "class_{i:03d}")
    _pickle(base / "meta", {"fine_label_names": fine, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return Fake("cifar100", len(labels), 100, {0: "apple", 1: "aquarium fish", 50: "class 050"})


STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def stl10_image(label: int) -> np.ndarray:
    """A 96×96×3 image of ``label``'s colour with a white marker at the top-left (row 0, columns 0..3)."""
    img = label_array(label, 96)
    img[0, 0:4] = 255
    return img


def make_stl10(root: Path, per_class: int = 2) -> Fake:
    base = root / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    labels = [y for _ in range(per_class) for y in range(10)]
    # the binary stores each image as 3×96×96 in column-major order: raw[c, w, h] = image[h, w, c]
    raw = np.stack([stl10_image(y).transpose(2, 1, 0) for y in labels])
    raw.tofile(base / "test_X.bin")
    np.array([y + 1 for y in labels], dtype=np.uint8).tofile(base / "test_y.bin")
    write_lines(base / "class_names.txt", STL10_NAMES)
    return Fake("stl10", len(labels), 10, {0: "airplane", 7: "monkey"})


def make_pcam(root: Path, n: int = 6) -> Fake:
    import h5py

    base = root / "pcam"
    base.mkdir(parents=True, exist_ok=True)
    labels = [i % 2 for i in range(n)]
    with h5py.File(base / "camelyonpatch_level_2_split_test_x.h5", "w") as f:
        f.create_dataset("x", data=np.stack([label_array(y, 96) for y in labels]))
    with h5py.File(base / "camelyonpatch_level_2_split_test_y.h5", "w") as f:
        f.create_dataset("y", data=np.array(labels, dtype=np.uint8).reshape(n, 1, 1, 1))
    return Fake("pcam", n, 2, {0: "healthy lymph node tissue", 1: "lymph node tumor tissue"})


# --- file-tree datasets -------------------------------------------------------------------------------------


def make_sun397(root: Path) -> Fake:
    base = root / "SUN397"
    classes = synthetic(["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"], 397, "/s/scene_{i:03d}")
    write_lines(base / "ClassName.txt", classes)
    n = 0
    for label, cls in enumerate(classes):
        for k in range(2 if label == 0 else 1):
            save_jpeg(base / cls.lstrip("/") / f"sun_a{label:03d}{k}.jpg", label)
            n += 1
    write_lines(base / "README.txt", ["fake"])
    return Fake("sun397", n, 397, {0: "abbey", 1: "apartment building outdoor", 2: "bakery shop"})


def make_food101(root: Path) -> Fake:
    base = root / "food-101"
    classes = synthetic(["apple_pie", "baby_back_ribs", "beef_carpaccio"], 101, "food_{i:03d}")
    test = {c: [f"{c}/{1000 + i}"] for i, c in enumerate(classes)}
    train = {c: [f"{c}/{2000 + i}"] for i, c in enumerate(classes)}
    (base / "meta").mkdir(parents=True, exist_ok=True)
    (base / "meta" / "test.json").write_text(json.dumps(test))
    (base / "meta" / "train.json").write_text(json.dumps(train))
    write_lines(base / "meta" / "classes.txt", classes)
    write_lines(base / "meta" / "labels.txt", [c.replace("_", " ").capitalize() for c in classes])
    for label, c in enumerate(sorted(classes)):
        save_jpeg(base / "images" / f"{test[c][0]}.jpg", label)
    return Fake("food101", 101, 101, {0: "apple pie", 1: "baby back ribs"})


PET_BREEDS = synthetic(["Abyssinian", "american_bulldog", "american_pit_bull_terrier"], 37, "breed{i:02d}")


def make_oxford_pets(root: Path) -> Fake:
    base = root / "oxford-iiit-pet"
    lines = []
    for label, breed in enumerate(PET_BREEDS):
        species = 1 if breed[0].isupper() else 2
        for k in range(2):
            image_id = f"{breed}_{100 + k}"
            lines.append(f"{image_id} {label + 1} {species} {label + 1}")
            save_jpeg(base / "images" / f"{image_id}.jpg", label)
    write_lines(base / "annotations" / "test.txt", lines)
    write_lines(base / "annotations" / "trainval.txt", lines[:2])
    return Fake("oxford_pets", len(lines), 37, {0: "abyssinian", 1: "american bulldog", 2: "american pit bull terrier"})


def make_flowers102(root: Path) -> Fake:
    from scipy.io import savemat

    base = root / "flowers-102"
    base.mkdir(parents=True, exist_ok=True)
    n_images = 3 * 102
    # 1-based labels, image id i -> labels[i - 1]; each run of 3 ids (train, val, test) shares a label and the
    # test ids cover all 102 labels in a scrambled order
    labels = [((i // 3) * 5) % 102 + 1 for i in range(n_images)]
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    ids = np.arange(1, n_images + 1)
    savemat(base / "setid.mat", {"trnid": ids[0::3][None], "valid": ids[1::3][None], "tstid": ids[2::3][None]})
    for i in ids[2::3]:
        save_jpeg(base / "jpg" / f"image_{i:05d}.jpg", labels[i - 1] - 1)
    return Fake("flowers102", 102, 102, {0: "pink primrose", 1: "hard leaved pocket orchid"})


def make_dtd(root: Path) -> Fake:
    base = root / "dtd" / "dtd"
    classes = synthetic(["banded", "blotchy", "braided"], 47, "texture_{i:02d}")
    test, train = [], []
    for label, c in enumerate(classes):
        for k in range(2):
            save_jpeg(base / "images" / c / f"{c}_{k:04d}.jpg", label)
        test.append(f"{c}/{c}_0000.jpg")
        test.append(f"{c}/{c}_0001.jpg")
        train.append(f"{c}/{c}_0000.jpg")
    write_lines(base / "labels" / "test1.txt", test)
    write_lines(base / "labels" / "train1.txt", train)
    write_lines(base / "labels" / "val1.txt", train)
    write_lines(base / "labels" / "labels_joint_anno.txt", [t + " " + t.split("/")[0] for t in test])
    return Fake("dtd", len(test), 47, {0: "banded", 3: "texture 03"})


EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake"]


def make_eurosat(root: Path) -> Fake:
    base = root / "eurosat" / "2750"
    for label, c in enumerate(EUROSAT_FOLDERS):
        for k in range(2):
            save_jpeg(base / c / f"{c}_{k + 1}.jpg", label)
    return Fake("eurosat", 20, 10, {0: "annual crop land", 9: "a sea or a lake", 2: "brushland or shrubland"})


def make_fgvc_aircraft(root: Path) -> Fake:
    data = root / "fgvc-aircraft-2013b" / "data"
    variants = synthetic(["707-320", "727-200", "A300B4", "Boeing 717", "DHC-8-100"], 100, "X{i:03d}_100")
    write_lines(data / "variants.txt", variants)
    lines = []
    for label, v in enumerate(variants):
        image = f"{1000000 + label}"
        lines.append(f"{image} {v}")
        save_jpeg(data / "images" / f"{image}.jpg", label)
    write_lines(data / "images_variant_test.txt", lines)
    write_lines(data / "images_variant_trainval.txt", lines[:3])
    return Fake("fgvc_aircraft", 100, 100, {0: "boeing 707-320", 2: "a300b4", 3: "boeing 717",
                                            4: "dhc-8-100", 50: "x050 100"})


def make_imagenet(root: Path, wnids: list[str], folder: str = "imagenet") -> Fake:
    val = root / folder / "val"
    for label, wnid in enumerate(wnids):
        save_jpeg(val / wnid / f"ILSVRC2012_val_{label + 1:08d}.JPEG", label)
    return Fake("imagenet", len(wnids), 1000, {0: "tench", 1: "goldfish", 999: "toilet paper"})


def make_caltech101(root: Path) -> Fake:
    base = root / "caltech101" / "101_ObjectCategories"
    real = ["Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor"]
    classes = synthetic(real, 101, "obj_{i:03d}")
    for k in range(2):
        save_jpeg(base / "BACKGROUND_Google" / f"image_{k + 1:04d}.jpg", 1000)
    for label, c in enumerate(sorted(classes)):
        save_jpeg(base / c / "image_0001.jpg", label)
    return Fake("caltech101", 101, 101, {0: "faces", 1: "faces easy", 3: "motorbikes", 4: "accordion"})


def make_caltech256(root: Path) -> Fake:
    base = root / "caltech256" / "256_ObjectCategories"
    real = {1: "ak47", 2: "american-flag", 145: "motorbikes-101", 257: "clutter"}
    for i in range(1, 258):
        folder = f"{i:03d}.{real.get(i, f'thing-{i}')}"
        save_jpeg(base / folder / f"{i:03d}_0001.jpg", i - 1)
    return Fake("caltech256", 257, 257, {0: "ak47", 1: "american flag", 144: "motorbikes", 256: "clutter",
                                         9: "thing 10"})


CAR_NAMES = synthetic(["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Mercedes-Benz C-Class Sedan 2012",
                       "Ram C/V Cargo Van Minivan 2012"], 196, "Make{i} Model_{i} Sedan 2010")
CAR_EXPECTED = {0: "am general hummer suv", 2: "mercedes benz c class sedan", 3: "ram c/v cargo van minivan",
                10: "make10 model 10 sedan"}


def _cells(names: list[str]) -> np.ndarray:
    cells = np.empty((1, len(names)), dtype=object)
    cells[0, :] = names
    return cells


def _struct(rows: list[dict]) -> np.ndarray:
    keys = list(rows[0])
    arr = np.empty((1, len(rows)), dtype=[(k, object) for k in keys])
    for i, row in enumerate(rows):
        arr[0, i] = tuple(row[k] for k in keys)
    return arr


def make_stanford_cars(root: Path) -> Fake:
    """torchvision's layout: devkit/cars_meta.mat, cars_test_annos_withlabels.mat, cars_test/."""
    from scipy.io import savemat

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": _cells(CAR_NAMES)})
    rows = []
    for label in range(196):
        fname = f"{label + 1:05d}.jpg"
        rows.append({"bbox_x1": 0, "bbox_y1": 0, "bbox_x2": 7, "bbox_y2": 7, "class": label + 1, "fname": fname})
        save_jpeg(base / "cars_test" / fname, label)
    savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _struct(rows)})
    savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": _struct(rows[:2])})
    return Fake("stanford_cars", 196, 196, CAR_EXPECTED)


def make_stanford_cars_annos(root: Path) -> Fake:
    """The all-in-one layout: cars_annos.mat (with a ``test`` flag per image) and car_ims/."""
    from scipy.io import savemat

    base = root / "stanford_cars"
    rows = []
    for label in range(196):
        for test in (0, 1):
            rel = f"car_ims/{len(rows) + 1:06d}.jpg"
            rows.append({"relative_im_path": rel, "bbox_x1": 0, "bbox_y1": 0, "bbox_x2": 7, "bbox_y2": 7,
                         "class": label + 1, "test": test})
            save_jpeg(base / rel, label)
    savemat(base / "cars_annos.mat", {"annotations": _struct(rows), "class_names": _cells(CAR_NAMES)})
    return Fake("stanford_cars", 196, 196, CAR_EXPECTED)


def imagenet_wnids() -> list[str]:
    from zsrbench.data.naming import imagenet_classes

    return [w for w, _ in imagenet_classes()]


MAKERS: dict[str, Callable[[Path], Fake]] = {
    "tinyimagenet": make_tinyimagenet, "cifar10": make_cifar10, "cifar100": make_cifar100, "stl10": make_stl10,
    "sun397": make_sun397, "food101": make_food101, "oxford_pets": make_oxford_pets,
    "flowers102": make_flowers102, "dtd": make_dtd, "eurosat": make_eurosat, "fgvc_aircraft": make_fgvc_aircraft,
    "imagenet": lambda root: make_imagenet(root, imagenet_wnids()), "caltech101": make_caltech101,
    "caltech256": make_caltech256, "stanford_cars": make_stanford_cars, "pcam": make_pcam,
}


def make_all(root: Path, keys: list[str] | None = None) -> dict[str, Fake]:
    """Write the layouts of ``keys`` (all 16 by default) under ``root``."""
    return {key: MAKERS[key](root) for key in (keys or list(MAKERS))}


# --- tampered and broken files ------------------------------------------------------------------------------


class RunsOnLoad:
    """Pickles as ``func(*args)``: what a tampered pickle holds to run code when it is loaded."""

    def __init__(self, func: Callable, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def write_pickle(path: Path, obj: object, protocol: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def py2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2's cPickle wrote the CIFAR files: protocol 2, every ``str``/``bytes`` a Python 2
    ``str`` (BINSTRING) and numpy 1's module names (``numpy.core.multiarray``)."""
    import io

    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")


def _save_py2_str(pickler: "pickle._Pickler", obj: str | bytes) -> None:
    import struct

    data = obj.encode("latin1") if isinstance(obj, str) else obj
    head = pickle.SHORT_BINSTRING + bytes([len(data)]) if len(data) < 256 else (
        pickle.BINSTRING + struct.pack("<i", len(data)))
    pickler.write(head + data)
    pickler.memoize(obj)


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table a subclass can change
    dispatch = {**pickle._Pickler.dispatch, bytes: _save_py2_str, str: _save_py2_str}


def noisy_jpeg(path: Path, side: int = 64, seed: int = 0) -> None:
    """A JPEG of random pixels: most of its bytes are scan data, so cutting it leaves a truncated image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)


def truncate(path: Path, fraction: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# --- hostile archives: members that write outside the folder they are extracted into ------------------------------

HOSTILE_KINDS = ("dotdot", "absolute", "symlink", "hardlink", "device")
ZIP_HOSTILE_KINDS = ("dotdot", "absolute", "symlink", "device")  # a zip has no hard links


def hostile_targets(t: Path) -> dict[str, Path]:
    """Where a hostile archive extracted into ``t/outer/inner/data`` would write, all under ``t``."""
    return {"data": t / "outer" / "inner" / "data", "dotdot": t / "outer" / "dotdot.txt",
            "absolute": t / "abs-target" / "absolute.txt", "link_target": t / "link-target",
            "victim": t / "victim.txt"}


def _tar_member(tar, name: str, data: bytes = b"", kind: bytes | None = None, linkname: str = "") -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.mtime = 1_300_000_000
    if kind is not None:
        info.type, info.linkname, info.mode = kind, linkname, 0o644
        if kind == tarfile.CHRTYPE:
            info.devmajor, info.devminor = 1, 3  # /dev/null
        tar.addfile(info)
    elif name.endswith("/"):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def hostile_tar(path: Path, kind: str, top: str, t: Path) -> Path:
    """A tar(.gz) named ``path`` whose folder ``top/`` starts harmlessly and then holds one hostile member.

    ``kind``: ``dotdot`` (``../../dotdot.txt``, two levels above the folder it is extracted into), ``absolute``
    (an absolute name under ``t``), ``symlink`` (a link to a folder under ``t``, then a file written through it),
    ``hardlink`` (a hard link to ``t/victim.txt``, then a file of the same name that would overwrite the victim),
    ``device`` (a character device, /dev/null's numbers). The targets are made (empty) under ``t``.
    """
    import tarfile

    where = hostile_targets(t)
    where["absolute"].parent.mkdir(parents=True, exist_ok=True)
    where["link_target"].mkdir(parents=True, exist_ok=True)
    where["victim"].write_text("victim\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        _tar_member(tar, f"{top}/")
        _tar_member(tar, f"{top}/README", b"harmless\n")
        if kind == "dotdot":
            _tar_member(tar, "../../dotdot.txt", b"escaped\n")
        elif kind == "absolute":
            _tar_member(tar, str(where["absolute"]), b"escaped\n")
        elif kind == "symlink":
            _tar_member(tar, f"{top}/link", kind=tarfile.SYMTYPE, linkname=str(where["link_target"]))
            _tar_member(tar, f"{top}/link/through.txt", b"escaped\n")
        elif kind == "hardlink":
            _tar_member(tar, f"{top}/hard", kind=tarfile.LNKTYPE, linkname=str(where["victim"]))
            _tar_member(tar, f"{top}/hard", b"overwritten\n")
        elif kind == "device":
            _tar_member(tar, f"{top}/null", kind=tarfile.CHRTYPE)
        else:
            raise ValueError(kind)
        _tar_member(tar, f"{top}/after.txt", b"after\n")
    return path


def hostile_zip(path: Path, kind: str, top: str, t: Path) -> Path:
    """A zip named ``path`` like :func:`hostile_tar` (a zip has no hard links; a symlink or a device is marked in
    the Unix mode of its external attributes)."""
    import stat
    import zipfile

    where = hostile_targets(t)
    where["absolute"].parent.mkdir(parents=True, exist_ok=True)
    where["link_target"].mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    def special(name: str, mode: int, data: bytes) -> None:
        info = zipfile.ZipInfo(name, (2011, 3, 14, 0, 0, 0))
        info.create_system = 3  # Unix: the mode is in the high bits of external_attr
        info.external_attr = mode << 16
        zf.writestr(info, data)

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/", b"")
        zf.writestr(f"{top}/README", b"harmless\n")
        if kind == "dotdot":
            zf.writestr(zipfile.ZipInfo("../../dotdot.txt"), b"escaped\n")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo(str(where["absolute"])), b"escaped\n")
        elif kind == "symlink":
            special(f"{top}/link", stat.S_IFLNK | 0o777, str(where["link_target"]).encode())
            zf.writestr(f"{top}/link/through.txt", b"escaped\n")
        elif kind == "device":
            special(f"{top}/null", stat.S_IFCHR | 0o666, b"")
        else:
            raise ValueError(kind)
        zf.writestr(f"{top}/after.txt", b"after\n")
    return path


def tree_state(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed): its kind and, for a file, its content's sha256."""
    import hashlib
    import os
    import stat

    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link -> {os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"special {stat.S_IFMT(st.st_mode):o}"
    return out


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def good_archive(name: str, top: str, files: dict[str, bytes]) -> bytes:
    """The bytes of a harmless tar(.gz) or zip (by ``name``) holding ``top/`` and ``files`` (relative to it)."""
    import io
    import tarfile
    import zipfile

    buffer = io.BytesIO()
    if name.endswith(".zip"):
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{top}/", b"")
            for rel, data in files.items():
                zf.writestr(f"{top}/{rel}", data)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz" if name.endswith("gz") else "w") as tar:
            _tar_member(tar, f"{top}/")
            for rel, data in files.items():
                _tar_member(tar, f"{top}/{rel}", data)
    return buffer.getvalue()


def layout_archive(name: str, maker: Callable[[Path], Fake], top: str) -> bytes:
    """A harmless archive (tar or zip, by ``name``) of the tiny layout ``maker`` writes, whose top folder is
    ``top``: what a download of the real archive gives, in small."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        maker(Path(tmp))
        base = Path(tmp) / top
        files = {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}
    return good_archive(name, top, files)
