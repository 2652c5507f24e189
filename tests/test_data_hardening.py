"""Hardened dataset reading: no code from pickles, broken and truncated images, empty classes, cheap checks."""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import zsrbench.data  # noqa: F401  (registers the datasets)
import zsrbench.micro  # noqa: F401  (registers the micro datasets)
from fake_layouts import (
    RunsOnLoad,
    _cifar_batch,
    make_all,
    make_cifar10,
    make_cifar100,
    noisy_jpeg,
    py2_pickle,
    truncate,
    write_pickle,
)
from zsrbench.data import readers as rd
from zsrbench.data import safe_pickle
from zsrbench.data.base import eval_transform
from zsrbench.data.check import BROKEN, FOUND, MISSING, WRONG_LAYOUT, check_data_root, missing_or_broken
from zsrbench.data.layout import BrokenImageError, DataLayoutError, DataMissingError
from zsrbench.data.safe_pickle import UnsafePickleError
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS

# datasets read from image files, by each kind of reader: zsrbench's file lists and five torchvision classes
FILE_KEYS = ("sun397", "imagenet", "caltech101", "food101", "oxford_pets", "eurosat", "stanford_cars")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fakes")
    make_all(root, [*FILE_KEYS, "cifar10", "dtd"])
    return root


def build(key: str, root: Path | None, **kw):
    return DATASETS.get(key).build(root, **kw)


def copy_of(fakes: Path, tmp_path: Path, key: str) -> Path:
    """A copy of one fake dataset under ``tmp_path`` (the data root to damage)."""
    from zsrbench.data.tga16_table import SOURCES

    top = SOURCES[key].folder.split("/")[0]
    shutil.copytree(fakes / top, tmp_path / top)
    return tmp_path


# --- pickles ---------------------------------------------------------------------------------------------


def evil_payloads(marker: Path) -> list[RunsOnLoad]:
    return [RunsOnLoad(os.system, (f"touch {marker}",)), RunsOnLoad(builtins.open, (str(marker), "w"))]


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("file", ["test_batch", "batches.meta"])
def test_tampered_cifar_pickle_never_runs(tmp_path, which, file):
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = evil_payloads(marker)[which]
    write_pickle(tmp_path / "cifar-10-batches-py" / file, {"data": payload, "labels": [0], "label_names": ["a"]})
    with pytest.raises(UnsafePickleError) as err:
        build("cifar10", tmp_path)
    message = str(err.value)
    assert not marker.exists()
    assert isinstance(err.value, ZsrError)
    assert str(tmp_path / "cifar-10-batches-py" / file) in message
    assert ("posix.system" if which == 0 else "io.open") in message
    assert "never holds" in message and "re-download" in message and "How to obtain it" in message


def test_tampered_cifar100_and_protocol_2(tmp_path):
    make_cifar100(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "cifar-100-python" / "test", RunsOnLoad(os.system, (f"touch {marker}",)), protocol=2)
    with pytest.raises(UnsafePickleError, match="cifar-100-python/test contains a pickled object"):
        build("cifar100", tmp_path)
    assert not marker.exists()


def test_data_check_on_a_tampered_pickle(tmp_path):
    from zsrbench.cli import app

    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", RunsOnLoad(os.system, (f"touch {marker}",)))
    [status] = check_data_root(tmp_path, ["cifar10"])
    assert status.status == WRONG_LAYOUT and "tampered" in status.message
    result = CliRunner().invoke(app, ["data", "check", "--data-root", str(tmp_path), "--datasets", "cifar10"])
    assert result.exit_code == 1, result.output  # `data check` exits 1 for a named dataset that is unusable
    assert "tampered" in result.output and "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5, "py2"])
def test_legitimate_cifar_pickles_load(tmp_path, protocol):
    base = tmp_path / "cifar-10-batches-py"
    make_cifar10(tmp_path)
    labels = [y % 10 for y in range(30)]
    batch = _cifar_batch(labels, "labels")
    batch["labels"] = [np.int64(y) for y in labels] if protocol == 4 else labels  # numpy scalars pickle too
    if protocol == "py2":  # as the real files were written: Python 2 cPickle, numpy 1 names
        (base / "test_batch").write_bytes(py2_pickle(batch))
        (base / "batches.meta").write_bytes(py2_pickle({"label_names": [f"c{i}" for i in range(10)]}))
    else:
        write_pickle(base / "test_batch", batch, protocol=protocol)
    evalset = build("cifar10", tmp_path, transform=lambda im: np.asarray(im))
    assert len(evalset) == 30
    assert [evalset.dataset[i][1] for i in range(30)] == labels
    assert np.array_equal(evalset.dataset[7][0], batch["data"][7].reshape(3, 32, 32).transpose(1, 2, 0))


def test_restricted_unpickler_refuses_anything_else(tmp_path):
    path = tmp_path / "f"
    for obj in (RunsOnLoad(eval, ("1",)), RunsOnLoad(np.load, ("x",)), RunsOnLoad(getattr, ("x", "upper"))):
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(UnsafePickleError, match="never holds"):
            safe_pickle.load(path, "a CIFAR file")
    path.write_bytes(pickle.dumps({"ok": [1, 2.5, "s", b"b", (1,), None, True]}))
    assert safe_pickle.load(path, "a CIFAR file") == {"ok": [1, 2.5, "s", b"b", (1,), None, True]}


def test_refused_numpy_object_array_items(tmp_path):
    path = tmp_path / "f"
    arr = np.array([RunsOnLoad(os.system, ("true",))], dtype=object)
    path.write_bytes(pickle.dumps(arr))
    with pytest.raises(UnsafePickleError, match="posix.system"):
        safe_pickle.load(path, "a CIFAR file")


# --- broken images ---------------------------------------------------------------------------------------


def middle_file(evalset) -> tuple[int, Path]:
    files = rd.image_files(evalset.dataset)
    assert files is not None
    i = len(files) // 2
    return i, files[i]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted"])
@pytest.mark.parametrize("key", FILE_KEYS)
def test_broken_image_in_the_middle_names_the_file(fakes, tmp_path, key, damage):
    root = copy_of(fakes, tmp_path, key)
    evalset = build(key, root, image_size=16)
    i, path = middle_file(evalset)
    if damage == "garbage":
        path.write_bytes(b"not an image at all")
    elif damage == "truncated":
        noisy_jpeg(path)
        truncate(path)
    else:
        path.unlink()
    with pytest.raises(BrokenImageError) as err:
        evalset.dataset[i]
    message = str(err.value)
    assert str(path) in message and f"cannot read image {i}" in message
    assert "re-copy or re-download it" in message and "--skip-broken-images" in message
    assert err.value.path == str(path)
    evalset.dataset[0]  # the others still read


def test_truncated_jpeg_is_never_padded(tmp_path, monkeypatch):
    path = tmp_path / "cut.jpg"
    noisy_jpeg(path)
    truncate(path)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as if another library had turned it on
    with pytest.raises(BrokenImageError, match="truncated"):
        rd.decode_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    whole = tmp_path / "whole.jpg"
    noisy_jpeg(whole)
    assert rd.decode_image(whole).size == (64, 64)


def test_non_image_errors_are_not_blamed_on_the_file(fakes):
    def failing(im):
        raise ValueError("a transform bug")

    evalset = build("eurosat", fakes, transform=failing, probe=False)
    with pytest.raises(ValueError, match="a transform bug"):
        evalset.dataset[0]


def test_broken_image_survives_dataloader_workers(fakes, tmp_path):
    root = copy_of(fakes, tmp_path, "sun397")
    evalset = build("sun397", root, image_size=16)
    i, path = middle_file(evalset)
    path.write_bytes(b"broken")
    loader = DataLoader(evalset.dataset, batch_size=4, num_workers=1)
    with pytest.raises(BrokenImageError) as err:
        list(loader)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read image {i}") and "Traceback" not in message


def test_data_errors_build_from_one_message():
    wrapped = ("Caught BrokenImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
               "last):\n  File \"x.py\", line 1, in f\nzsrbench.data.layout.BrokenImageError: /a.jpg: cannot read")
    for cls in (DataMissingError, DataLayoutError, BrokenImageError, UnsafePickleError):
        assert str(cls("plain message")) == "plain message"
        assert str(cls(wrapped)) == "/a.jpg: cannot read"
        assert issubclass(cls, ZsrError)


@pytest.mark.parametrize("key", ["sun397", "caltech101", "eurosat"])
def test_skip_broken_leaves_them_out_and_lists_them(fakes, tmp_path, key):
    root = copy_of(fakes, tmp_path, key)
    whole = build(key, root, image_size=16)
    files = rd.image_files(whole.dataset)
    broken = [files[1], files[len(files) // 2], files[-1]]  # the last one too: the probe must not trip on it
    for path in broken:
        path.write_bytes(b"broken")
    with pytest.raises(BrokenImageError, match="cannot read image"):
        build(key, root, image_size=16)  # the probe reads the last image
    evalset = build(key, root, image_size=16, skip_broken=True)
    assert evalset.skipped == tuple(str(p) for p in broken)
    assert len(evalset) == len(whole) - 3
    for i in range(len(evalset)):
        evalset.dataset[i]
    assert build(key, fakes, image_size=16, skip_broken=True).skipped == ()


def test_skip_broken_is_ignored_by_generated_data():
    evalset = build("synthetic_shapes", None, skip_broken=True)
    assert evalset.skipped == () and len(evalset) == 48


# --- data check --deep -----------------------------------------------------------------------------------


def test_deep_check_reports_broken_images(fakes, tmp_path):
    root = copy_of(fakes, tmp_path, "imagenet")
    files = rd.image_files(build("imagenet", root).dataset)
    for path in files[10:15]:
        path.write_bytes(b"broken")
    [cheap] = check_data_root(root, ["imagenet"])
    assert cheap.status == FOUND
    [deep] = check_data_root(root, ["imagenet"], deep=True)
    assert deep.status == BROKEN and deep.n_images == 1000
    assert deep.message.startswith("5 of 1000 images cannot be decoded: ")
    assert str(files[10]) in deep.message and "and 2 more" in deep.message and "--skip-broken-images" in deep.message

    runner = CliRunner()
    from zsrbench.cli.data import data_app

    result = runner.invoke(data_app, ["check", "--data-root", str(root), "--datasets", "imagenet", "--deep"])
    assert result.exit_code == 1 and "broken" in result.output and "5 of 1000 images" in result.output
    result = runner.invoke(data_app, ["check", "--data-root", str(root), "--datasets", "imagenet"])
    assert result.exit_code == 0, result.output


def test_deep_check_passes_on_good_data(fakes):
    statuses = check_data_root(fakes, ["sun397", "caltech101", "cifar10", "dtd"], deep=True)
    assert [s.status for s in statuses] == [FOUND] * 4


# --- empty class folders ---------------------------------------------------------------------------------


def empty_folder(folder: Path) -> None:
    for f in folder.iterdir():
        f.unlink()


@pytest.mark.parametrize("key, rel", [
    ("caltech101", "caltech101/101_ObjectCategories/accordion"),
    ("imagenet", "imagenet/val/n01443537"),
    ("eurosat", "eurosat/2750/Forest"),
])
def test_empty_class_folder_is_a_wrong_layout(fakes, tmp_path, key, rel):
    root = copy_of(fakes, tmp_path, key)
    empty_folder(root / rel)
    name = Path(rel).name
    with pytest.raises(DataLayoutError, match=f"1 of [0-9]+ class folders hold no images \\({name}/\\)"):
        build(key, root)
    [status] = check_data_root(root, [key])
    assert status.status == WRONG_LAYOUT and f"{name}/" in status.message


def test_class_without_images_in_a_file_list(fakes, tmp_path):
    root = copy_of(fakes, tmp_path, "sun397")
    (root / "SUN397" / "b" / "bakery" / "shop" / "sun_a0020.jpg").unlink()
    with pytest.raises(DataLayoutError, match="1 of 397 classes have no images \\(bakery shop\\)"):
        build("sun397", root)


# --- checking every named dataset before a run ------------------------------------------------------------


def test_missing_or_broken_names_every_unusable_dataset(fakes, tmp_path):
    root = copy_of(fakes, tmp_path, "cifar10")
    (root / "food-101" / "images").mkdir(parents=True)  # there, but without meta/
    names = ["cifar10", "sun397", "food101", "micro_shape", "dtd", "synthetic_colors"]
    bad = missing_or_broken(root, names)
    assert [(s.name, s.status) for s in bad] == [("sun397", MISSING), ("food101", WRONG_LAYOUT), ("dtd", MISSING)]
    assert str(root / "SUN397") in bad[0].message and str(root / "dtd" / "dtd") in bad[2].message
    assert missing_or_broken(fakes, ["cifar10", "dtd", "micro_shape"]) == []


def test_missing_or_broken_without_a_root_or_with_a_file(tmp_path):
    generated = [n for n, b in DATASETS.items() if not b.needs_root]
    assert {"micro_shape", "synthetic_shapes"} <= set(generated)
    assert missing_or_broken(None, generated) == []
    assert [s.status for s in missing_or_broken(None, ["cifar10", "micro_shape"])] == [MISSING]
    a_file = tmp_path / "data.tar"
    a_file.write_bytes(b"x")
    with pytest.raises(DataMissingError, match="data.tar is a file, not a folder. Pass --data-root"):
        missing_or_broken(a_file, ["cifar10", "micro_shape"])
    assert missing_or_broken(a_file, ["micro_shape"]) == []
    from zsrbench.cli.data import data_app

    result = CliRunner().invoke(data_app, ["check", "--data-root", str(a_file)])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_check_never_downloads_and_decodes_little(tmp_path, monkeypatch):
    import socket

    import torchvision.datasets.utils as tvu

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(tvu, "download_url", no_network)
    monkeypatch.setattr(tvu, "download_and_extract_archive", no_network)
    decoded = []
    real_decode = rd.decode_image
    monkeypatch.setattr(rd, "decode_image", lambda path, index=None: decoded.append(path) or real_decode(path, index))
    make_all(tmp_path, ["sun397", "caltech101"])
    statuses = check_data_root(tmp_path)  # the 16 of tga16: 14 missing, none downloaded
    assert {s.status for s in statuses} == {FOUND, MISSING}
    assert len(decoded) <= 2  # sun397's first and last (caltech101 is read by torchvision)


def test_check_of_a_missing_root_is_one_status_per_dataset(tmp_path):
    statuses = check_data_root(tmp_path / "nowhere", ["cifar10", "dtd"])
    assert [s.status for s in statuses] == [MISSING, MISSING]
    assert all("data root not found" in s.message for s in statuses)


def test_image_files_of_array_datasets_is_none(fakes):
    assert rd.image_files(build("cifar10", fakes).dataset) is None
    assert rd.broken_images(build("cifar10", fakes).dataset) == []


def test_eval_transform_still_reads_pil(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    image = eval_transform("native", 8)(rd.decode_image(path))
    assert tuple(image.shape) == (3, 4, 5)


# --- archives without a checksum: extracted member by member ------------------------------------------------------

ARCHIVE_NAMES = {"tar": "fgvc-aircraft-2013b.tar.gz", "plain-tar": "x.tar", "zip": "tiny-imagenet-200.zip"}


def _hostile(kind_of_archive: str, kind: str, t: Path) -> Path:
    from fake_layouts import hostile_tar, hostile_zip

    name = ARCHIVE_NAMES[kind_of_archive]
    make = hostile_zip if kind_of_archive == "zip" else hostile_tar
    return make(t / "archives" / name, kind, "top", t)


HOSTILE_CASES = [("tar", k) for k in ("dotdot", "absolute", "symlink", "hardlink", "device")] + [
    ("plain-tar", "symlink"), ("plain-tar", "hardlink")] + [("zip", k) for k in ("dotdot", "absolute", "symlink",
                                                                                 "device")]
WHAT = {"dotdot": "'../../dotdot.txt' is a name with a '..' component", "absolute": "is an absolute name",
        "symlink": "'top/link' is a symbolic link", "hardlink": "'top/hard' is a hard link (to ",
        "device": "'top/null' is a character device"}


@pytest.mark.parametrize("archive_kind,kind", HOSTILE_CASES)
def test_safe_extract_refuses_every_member_that_could_leave_the_folder(tmp_path, archive_kind, kind):
    from fake_layouts import hostile_targets, tree_state
    from zsrbench.data.archives import UnsafeArchiveError, check_archive, safe_extract

    archive = _hostile(archive_kind, kind, tmp_path)
    dest = hostile_targets(tmp_path)["data"]
    dest.mkdir(parents=True)
    before = tree_state(tmp_path)
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, dest, expect="top")
    message = " ".join(str(err.value).split())
    assert WHAT[kind] in message and str(archive) in message and "Nothing was extracted" in message
    assert tree_state(tmp_path) == before  # nothing outside, nothing inside, no staging folder left
    with pytest.raises(UnsafeArchiveError, match="its member"):
        check_archive(archive)


def test_safe_extract_extracts_plain_archives_and_never_overwrites(tmp_path):
    import io
    import tarfile
    import zipfile

    from zsrbench.data.archives import ArchiveError, safe_extract

    tar_path = tmp_path / "a.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, data, mode in (("./top/", None, 0o755), ("./top/sub/run.sh", b"#!/bin/sh\n", 0o755),
                                 ("top/data.txt", b"data\n", 0o600), ("./", None, 0o755)):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, 1_300_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "dest"
    assert safe_extract(tar_path, dest, expect="top") == ["top"]
    assert (dest / "top" / "data.txt").read_bytes() == b"data\n"
    assert os.access(dest / "top" / "sub" / "run.sh", os.X_OK)
    assert (dest / "top" / "data.txt").stat().st_mtime == 1_300_000_000
    assert sorted(p.name for p in dest.iterdir()) == ["top"]  # no staging folder left

    before = sorted(p.name for p in (dest / "top").rglob("*"))
    with pytest.raises(ArchiveError, match=f"would overwrite {dest / 'top'}, which is already there"):
        safe_extract(tar_path, dest)
    assert sorted(p.name for p in (dest / "top").rglob("*")) == before
    zip_path = tmp_path / "b.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("other/a.txt", b"a")
    with pytest.raises(ArchiveError, match="holds no top/ at its top .it holds other."):
        safe_extract(zip_path, dest / "new", expect="top")
    assert list((dest / "new").iterdir()) == []
    assert safe_extract(zip_path, dest / "new") == ["other"]
    assert (dest / "new" / "other" / "a.txt").read_bytes() == b"a"


@pytest.mark.parametrize("damage", ["empty", "truncated", "not an archive"])
def test_safe_extract_of_a_damaged_archive_leaves_nothing(tmp_path, damage):
    from fake_layouts import good_archive, random_bytes
    from zsrbench.data.archives import ArchiveError, safe_extract

    archive = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    blob = good_archive(archive.name, "top", {"a.bin": random_bytes(1 << 16), "b.bin": random_bytes(1 << 16, 1)})
    archive.write_bytes({"empty": b"", "truncated": blob[: len(blob) * 3 // 4], "not an archive": b"hello" * 99
                         }[damage])
    with pytest.raises(ArchiveError, match="Cannot extract .* Nothing was extracted"):
        safe_extract(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_an_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch):
    from fake_layouts import good_archive
    from zsrbench.data import archives

    archive = tmp_path / "x.zip"
    archive.write_bytes(good_archive(archive.name, "top", {f"{i}.txt": b"x" for i in range(5)}))
    real, count = archives._write, [0]

    def interrupted(member, target):
        count[0] += 1
        if count[0] == 3:
            raise KeyboardInterrupt
        real(member, target)

    monkeypatch.setattr(archives, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        archives.safe_extract(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []
    monkeypatch.setattr(archives, "_write", real)
    (tmp_path / "dest" / ".x.zip.zsrbench-extracting").mkdir()  # as a kill -9 leaves it: removed by the next run
    assert archives.safe_extract(archive, tmp_path / "dest") == ["top"]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["top"]
