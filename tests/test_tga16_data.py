"""The 16 tga16 datasets read from tiny copies of their on-disk layouts (tests/fake_layouts.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import zsrbench.data  # noqa: F401  (registers the datasets)
from fake_layouts import (
    MAKERS,
    decode_label,
    make_all,
    make_cifar10,
    make_food101,
    make_stanford_cars_annos,
    make_tinyimagenet,
    stl10_image,
)
from zsrbench.cli.data import data_app
from zsrbench.data import naming
from zsrbench.data.check import FOUND, MISSING, WRONG_LAYOUT, check_data_root
from zsrbench.data.layout import DataLayoutError, DataMissingError
from zsrbench.data.tga16_table import INFOS, SOURCES, TGA16_KEYS
from zsrbench.errors import ZsrError
from zsrbench.protocols import TGA16_DATASETS
from zsrbench.registry import DATASETS

NATIVE = {"tinyimagenet": 64, "cifar10": 32, "cifar100": 32, "stl10": 96}

FIRST_PROMPT = {
    "tinyimagenet": "This is a photo of a {}",
    "cifar10": "This is a photo of a airplane",
    "cifar100": "This is a photo of a apple",
    "stl10": "This is a photo of a airplane",
    "sun397": "This is a photo of a abbey",
    "food101": "A photo of apple pie, a type of food.",
    "oxford_pets": "A photo of a abyssinian, a type of pet.",
    "flowers102": "A photo of a pink primrose, a type of flower.",
    "dtd": "A surface with a banded texture.",
    "eurosat": "A centered satellite photo of annual crop land.",
    "fgvc_aircraft": "A photo of a boeing 707-320, a type of aircraft.",
    "imagenet": "This is a photo of a tench",
    "caltech101": "This is a photo of a faces",
    "caltech256": "A photo of a ak47.",
    "stanford_cars": "A photo of a am general hummer suv.",
    "pcam": "This is a photo of healthy lymph node tissue.",
}


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    return root, make_all(root)


def build(key: str, root: Path, **kw):
    return DATASETS.get(key).build(root, **kw)


# --- registration -----------------------------------------------------------------------------------------


def test_keys_match_protocol_and_are_registered():
    assert TGA16_KEYS == TGA16_DATASETS
    assert set(MAKERS) == set(TGA16_KEYS)
    for key in TGA16_KEYS:
        builder = DATASETS.get(key)
        assert builder.needs_root and builder.how_to_obtain and builder.description
        assert builder.info.name == key


def test_input_modes():
    for key, info in INFOS.items():
        if key in NATIVE:
            assert (info.input_mode, info.native_size) == ("native", NATIVE[key])
        else:
            assert (info.input_mode, info.native_size) == ("crop", None)


# --- every dataset from its fake layout -------------------------------------------------------------------


@pytest.mark.parametrize("key", TGA16_KEYS)
def test_builds_images_labels_and_classes(fake_root, key):
    root, fakes = fake_root
    fake = fakes[key]
    evalset = build(key, root, image_size=16)
    assert len(evalset) == fake.n_images
    assert evalset.info.num_classes == fake.n_classes == SOURCES[key].n_classes
    for label, name in fake.names.items():
        assert evalset.info.classnames[label] == name
    for i in range(len(evalset)):  # every image arrives with the label its metadata gives it
        image, label = evalset.dataset[i]
        assert type(label) is int
        assert decode_label(image) == label, (key, i)
    assert evalset.root == str(root)
    assert Path(evalset.extra["folder"]).is_dir()


@pytest.mark.parametrize("key", TGA16_KEYS)
def test_input_size(fake_root, key):
    root, _ = fake_root
    image, _ = build(key, root, image_size=224).dataset[0]
    side = NATIVE.get(key, 224)
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, side, side)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


@pytest.mark.parametrize("key", TGA16_KEYS)
def test_first_prompt(fake_root, key):
    root, fakes = fake_root
    info = build(key, root, image_size=16, probe=False).info
    expected = FIRST_PROMPT[key].format(info.classnames[0])
    assert info.prompts()[0][0] == expected
    assert len(info.prompts()) == fakes[key].n_classes


def test_more_prompts(fake_root):
    root, _ = fake_root
    aircraft = build("fgvc_aircraft", root, probe=False).info.prompts()
    assert aircraft[2] == ["A photo of a a300b4, a type of aircraft."]
    assert aircraft[3] == ["A photo of a boeing 717, a type of aircraft."]
    cars = build("stanford_cars", root, probe=False).info.prompts()
    assert cars[2] == ["A photo of a mercedes benz c class sedan."]
    tiny = build("tinyimagenet", root, probe=False).info
    assert "This is a photo of a lesser panda" in [p[0] for p in tiny.prompts()]
    assert build("dtd", root, probe=False).info.split == "test1"


# --- class lists that are zsrbench's own data ---------------------------------------------------------------


def test_static_class_lists():
    flowers = INFOS["flowers102"].classnames
    assert len(flowers) == 102 and len(set(flowers)) == 102
    assert flowers[:2] == ("pink primrose", "hard leaved pocket orchid") and flowers[-1] == "blackberry lily"
    assert all(n == n.strip() and "  " not in n for n in flowers)

    eurosat = INFOS["eurosat"].classnames
    assert len(eurosat) == 10
    assert eurosat[0] == "annual crop land" and eurosat[-1] == "a sea or a lake"
    assert INFOS["eurosat"].prompts()[3] == ["A centered satellite photo of a highway or a road."]

    pcam = INFOS["pcam"]
    assert pcam.num_classes == 2
    assert pcam.prompts() == [["This is a photo of healthy lymph node tissue."],
                              ["This is a photo of lymph node tumor tissue."]]

    imagenet = naming.imagenet_classes()
    wnids = [w for w, _ in imagenet]
    assert len(imagenet) == 1000 and wnids == sorted(set(wnids)) and all(w.startswith("n") for w in wnids)
    assert imagenet[0] == ("n01440764", "tench") and imagenet[999][1] == "toilet paper"
    assert INFOS["imagenet"].num_classes == 1000


def test_naming_rules():
    assert naming.normalise("Apartment_building/outdoor") == "apartment building outdoor"
    assert naming.normalise("hard-leaved  pocket_orchid", naming.PROMPT_CHARS) == "hard leaved pocket orchid"
    assert naming.aircraft_name("737-200") == "boeing 737-200"
    assert naming.aircraft_name("A321") == "a321"
    assert naming.car_name("Chevrolet Silverado 1500 Extended Cab 2012") == "chevrolet silverado 1500 extended cab"
    assert naming.car_name("Ram C/V Cargo Van Minivan 2012") == "ram c/v cargo van minivan"
    assert naming.caltech256_name("063.electric-guitar-101") == "electric guitar"
    assert naming.caltech256_name("257.clutter") == "clutter"
    assert naming.first_lemma("teddy, teddy bear") == "teddy"
    assert naming.sun397_class("/b/bakery/shop") == "bakery/shop"


# --- alternative layouts and splits ------------------------------------------------------------------------


def test_tinyimagenet_reorganised_val_and_train(tmp_path):
    fake = make_tinyimagenet(tmp_path, reorganised=True, per_class=1)
    val = build("tinyimagenet", tmp_path)
    assert len(val) == fake.n_images and val.extra["layout"] == "val/<wnid>/"
    assert all(decode_label(val.dataset[i][0]) == val.dataset[i][1] for i in range(0, len(val), 17))
    train = build("tinyimagenet", tmp_path, split="train")
    assert len(train) == 200 and train.info.split == "train"
    assert train.info.classnames == val.info.classnames
    assert all(decode_label(train.dataset[i][0]) == train.dataset[i][1] for i in range(0, 200, 13))


def test_stanford_cars_annos_layout(tmp_path):
    fake = make_stanford_cars_annos(tmp_path)
    evalset = build("stanford_cars", tmp_path, image_size=16)
    assert len(evalset) == fake.n_images and evalset.extra["layout"] == "cars_annos.mat"
    assert all(decode_label(evalset.dataset[i][0]) == evalset.dataset[i][1] for i in range(len(evalset)))
    assert evalset.info.classnames[3] == "ram c/v cargo van minivan"


def test_imagenet_capitalised_folder(tmp_path, fake_root):
    root, _ = fake_root
    shutil.copytree(root / "imagenet", tmp_path / "ImageNet")
    assert len(build("imagenet", tmp_path, probe=False)) == 1000


def test_split_and_transform_options(fake_root):
    root, _ = fake_root
    with pytest.raises(ZsrError, match="no split 'train'"):
        build("cifar10", root, split="train")
    evalset = build("cifar10", root, transform=lambda im: im.size)
    assert evalset.dataset[0][0] == (32, 32)


def test_download_goes_through_torchvision_only_when_needed(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeCIFAR10:  # stands in for torchvision's class: "downloads" by writing the layout
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            make_cifar10(Path(root))

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    assert len(build("cifar10", tmp_path, download=True)) == 30
    assert calls == [(str(tmp_path), False, True)]
    build("cifar10", tmp_path, download=True)  # already there: no second download
    assert len(calls) == 1

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "STL10", offline)
    with pytest.raises(DataMissingError, match="network is unreachable.*How to obtain it"):
        build("stl10", tmp_path, download=True)


# --- our readers read what torchvision reads ---------------------------------------------------------------


def test_stl10_orientation(fake_root):
    root, _ = fake_root
    image, label = build("stl10", root).dataset[0]
    expected = torch.from_numpy(stl10_image(label)).permute(2, 0, 1).float() / 255
    assert torch.equal(image, expected)


@pytest.mark.parametrize("key", ["cifar10", "cifar100", "stl10", "flowers102", "sun397"])
def test_matches_torchvision(fake_root, monkeypatch, key):
    import torchvision.datasets as tvd
    from torchvision.datasets import cifar, flowers102

    root, _ = fake_root
    # torchvision refuses files whose md5 differs from the original download; the fakes are not the originals
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(flowers102, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)
    tv = {
        "cifar10": lambda: tvd.CIFAR10(str(root), train=False),
        "cifar100": lambda: tvd.CIFAR100(str(root), train=False),
        "stl10": lambda: tvd.STL10(str(root), split="test"),
        "flowers102": lambda: tvd.Flowers102(str(root), split="test"),
        "sun397": lambda: tvd.SUN397(str(root)),
    }[key]()
    ours = build(key, root, transform=lambda im: im)
    assert len(ours) == len(tv)
    if key == "sun397":  # same (file, label) pairs; ours in sorted order
        ours_pairs = sorted(zip(map(str, ours.dataset.files), ours.dataset.labels, strict=True))
        assert ours_pairs == sorted(zip(map(str, tv._image_files), tv._labels, strict=True))
        return
    for i in range(len(tv)):
        (a, ya), (b, yb) = ours.dataset[i], tv[i]
        assert ya == yb and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    if key != "flowers102":  # zsrbench's Flowers102 list differs from torchvision's in one name (see the file)
        assert list(ours.info.classnames) == [naming.normalise(c) for c in tv.classes]


# --- missing and broken data -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", TGA16_KEYS)
def test_missing_dataset_names_expected_path(tmp_path, key):
    (tmp_path / "something_else").mkdir()
    with pytest.raises(DataMissingError) as err:
        build(key, tmp_path)
    message = str(err.value)
    assert str(tmp_path / SOURCES[key].folder) in message
    assert "something_else/" in message  # what was found instead
    assert "How to obtain it:" in message and SOURCES[key].how_to_obtain in message


def test_missing_root():
    with pytest.raises(DataMissingError, match="--data-root"):
        build("cifar10", None)
    with pytest.raises(DataMissingError, match="/no/such/root"):
        build("cifar10", "/no/such/root")


def test_incomplete_layout_names_missing_file(tmp_path):
    make_food101(tmp_path)
    (tmp_path / "food-101" / "meta" / "test.json").unlink()
    with pytest.raises(DataLayoutError) as err:
        build("food101", tmp_path)
    assert str(tmp_path / "food-101" / "meta" / "test.json") in str(err.value)
    assert "classes.txt" in str(err.value)  # what the folder holds instead


def test_missing_class_folder_and_images(tmp_path, fake_root):
    root, _ = fake_root
    shutil.copytree(root / "caltech256", tmp_path / "caltech256")
    shutil.rmtree(tmp_path / "caltech256" / "256_ObjectCategories" / "257.clutter")
    with pytest.raises(DataLayoutError, match="found 256 classes, expected 257"):
        build("caltech256", tmp_path)

    shutil.copytree(root / "tiny-imagenet-200", tmp_path / "tiny-imagenet-200")
    (tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_3.JPEG").unlink()
    with pytest.raises(DataLayoutError, match="1 of 400 listed images are missing.*val_3.JPEG"):
        build("tinyimagenet", tmp_path)


def test_unreadable_image_is_a_layout_error(tmp_path, fake_root):
    root, _ = fake_root
    shutil.copytree(root / "eurosat", tmp_path / "eurosat")
    (tmp_path / "eurosat" / "2750" / "AnnualCrop" / "AnnualCrop_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataLayoutError, match="cannot read image 0"):
        build("eurosat", tmp_path)


# --- zsrbench data check ---------------------------------------------------------------------------------


@pytest.fixture
def partial_root(tmp_path, fake_root) -> Path:
    root, _ = fake_root
    shutil.copytree(root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    shutil.copytree(root / "dtd", tmp_path / "dtd")
    (tmp_path / "food-101" / "images").mkdir(parents=True)  # there, but without meta/
    return tmp_path


def test_check_data_root(partial_root, fake_root):
    statuses = {s.name: s for s in check_data_root(partial_root)}
    assert list(statuses) == list(TGA16_KEYS)
    assert statuses["cifar10"].status == FOUND
    assert (statuses["cifar10"].n_images, statuses["cifar10"].n_classes) == (30, 10)
    assert (statuses["dtd"].status, statuses["dtd"].n_images, statuses["dtd"].n_classes) == (FOUND, 94, 47)
    assert statuses["food101"].status == WRONG_LAYOUT and "meta" in statuses["food101"].message
    assert statuses["sun397"].status == MISSING and statuses["sun397"].path == str(partial_root / "SUN397")
    assert all(s.ok for s in check_data_root(fake_root[0]))
    with pytest.raises(ZsrError, match="Did you mean 'cifar10'"):
        check_data_root(partial_root, ["cifar11"])


def test_cli_check(partial_root):
    runner = CliRunner()
    result = runner.invoke(data_app, ["check", "--data-root", str(partial_root)])
    assert result.exit_code == 0, result.output
    for text in ("cifar10", "found", "missing", "wrong layout", "pcam", "2 of 16 datasets found"):
        assert text in result.output

    result = runner.invoke(data_app, ["check", "--data-root", str(partial_root), "--datasets", "cifar10,dtd"])
    assert result.exit_code == 0, result.output
    assert "2 of 2 datasets found" in result.output

    result = runner.invoke(data_app, ["check", "--data-root", str(partial_root), "--datasets", "cifar10,sun397"])
    assert result.exit_code == 1
    assert str(partial_root / "SUN397") in result.output.replace("\n", "")

    result = runner.invoke(data_app, ["check", "--data-root", str(partial_root), "--datasets", "cifar11"])
    assert result.exit_code == 2 and "Did you mean" in result.output
