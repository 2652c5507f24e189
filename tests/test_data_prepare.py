"""Per-dataset data roots, docs/data.md's table, ``zsrbench data prepare`` and the sort of ImageNet's val/.

No network: downloads are tested up to torchvision's call (its classes are replaced by fakes that write the
tiny layouts of tests/fake_layouts.py), and the ImageNet sort runs on flat folders of tiny JPEGs.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd
from typer.testing import CliRunner

import zsrbench.data  # noqa: F401  (registers the datasets)
from fake_layouts import MAKERS, good_archive, imagenet_wnids, layout_archive, make_cifar10, make_dtd, save_jpeg
from zsrbench.cli.data import data_app
from zsrbench.data import imagenet_val as iv
from zsrbench.data import prepare as pr
from zsrbench.data.archives import UnsafeArchiveError
from zsrbench.data.check import FOUND, MISSING, WRONG_LAYOUT, check_data_root, check_dataset
from zsrbench.data.layout import LAYOUTS, dataset_root, is_root_template, layout_lines
from zsrbench.data.tga16_table import SOURCES, TGA16_KEYS
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "data.md"


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- --data-root: a folder or a template -------------------------------------------------------------------


def test_dataset_root_resolves_templates():
    assert dataset_root("/data", "cifar10") == Path("/data")
    assert dataset_root("/data/{dataset}", "cifar10") == Path("/data/cifar10")
    assert dataset_root("/d/{dataset}/x-{dataset}", "dtd") == Path("/d/dtd/x-dtd")
    assert dataset_root("~/{dataset}", "dtd") == Path.home() / "dtd"
    assert dataset_root("/data/{{old}}", "dtd") == Path("/data/{old}")  # escaped braces are literal
    assert dataset_root(None, "dtd") is None
    assert is_root_template("/data/{dataset}") and not is_root_template("/data") and not is_root_template(None)


@pytest.mark.parametrize("bad", ["/data/{name}", "/data/{}", "/data/{0}", "/data/{dataset!r}", "/data/{dataset:>9}",
                                 "/data/{dataset", "/data/dataset}"])
def test_unknown_or_broken_placeholder_is_a_user_error(bad):
    with pytest.raises(ZsrError, match=r"\{dataset\}"):
        dataset_root(bad, "cifar10")
    with pytest.raises(ZsrError, match=r"\{dataset\}"):
        check_data_root(bad, ["cifar10"])


def test_template_gives_each_dataset_its_own_root(tmp_path):
    make_cifar10(tmp_path / "cifar10")
    make_dtd(tmp_path / "dtd")
    template = str(tmp_path / "{dataset}")
    statuses = {s.name: s for s in check_data_root(template, ["cifar10", "dtd", "sun397"])}
    assert (statuses["cifar10"].status, statuses["cifar10"].n_images) == (FOUND, 30)
    assert statuses["dtd"].status == FOUND
    assert statuses["dtd"].path == str(tmp_path / "dtd" / "dtd" / "dtd")
    assert statuses["sun397"].status == MISSING and statuses["sun397"].path == str(tmp_path / "sun397" / "SUN397")
    assert str(tmp_path / "sun397") in statuses["sun397"].message
    assert len(DATASETS.get("cifar10").build(template)) == 30
    # the same data under one root is not found through the template, and the other way round
    assert check_dataset(str(tmp_path), "cifar10").status == MISSING


def test_run_and_train_checks_accept_a_template(tmp_path):
    from zsrbench.protocols import PROTOCOLS
    from zsrbench.evaluation.config import RunConfig, check_config
    from zsrbench.training.setup import check_train_data

    make_cifar10(tmp_path / "cifar10")
    cfg = dict(defense="clip", protocol="tga16", attacks=("pgd",), device="cpu", datasets=("cifar10",))
    assert check_config(RunConfig(**cfg, data_root=str(tmp_path / "{dataset}")))[0].name == "tga16"
    with pytest.raises(ZsrError, match=f"dtd \\(missing: DTD data root not found: expected {tmp_path / 'dtd'};"):
        check_config(RunConfig(**{**cfg, "datasets": ("cifar10", "dtd")}, data_root=str(tmp_path / "{dataset}")))
    with pytest.raises(ZsrError, match="only placeholder is {dataset}"):
        check_config(RunConfig(**cfg, data_root=str(tmp_path / "{name}")))
    proto = PROTOCOLS.get("tga16")
    (tmp_path / "tinyimagenet").mkdir()
    check_train_data(proto, str(tmp_path / "{dataset}"))  # resolves to tmp/tinyimagenet, which exists
    with pytest.raises(ZsrError, match=f"Data root {tmp_path / 'tinyimagenet' / 'x'} is not an existing folder"):
        check_train_data(proto, str(tmp_path / "{dataset}" / "x"))


def test_cli_check_with_a_template(tmp_path):
    make_cifar10(tmp_path / "cifar10")
    runner = CliRunner()
    result = runner.invoke(data_app, ["check", "--data-root", str(tmp_path / "{dataset}"), "--datasets", "cifar10"])
    assert result.exit_code == 0, result.output
    assert "1 of 1 datasets found" in result.output
    result = runner.invoke(data_app, ["check", "--data-root", str(tmp_path / "{set}")])
    assert result.exit_code == 2 and "{set}" in result.output and "Traceback" not in result.output


# --- docs/data.md -------------------------------------------------------------------------------------------


def doc_table() -> str:
    text = DOC.read_text()
    begin = "<!-- generated by python -m zsrbench.data.prepare: begin -->\n"
    end = "<!-- generated by python -m zsrbench.data.prepare: end -->"
    assert begin in text and end in text, "docs/data.md lost the markers of its generated table"
    return text[text.index(begin) + len(begin):text.index(end)]


def test_doc_table_is_generated_from_the_layout_table():
    assert doc_table() == pr.markdown_table(), (
        "docs/data.md's table differs from the layout table: regenerate it with python -m zsrbench.data.prepare")


def test_doc_table_names_every_required_path_of_every_dataset():
    rows = [r for r in doc_table().splitlines()[2:] if r.startswith("| `")]
    assert len(rows) == 16
    for key, row in zip(TGA16_KEYS, rows, strict=True):
        cells = row.split(" | ")
        assert cells[0] == f"| `{key}` " + DATASETS.get(key).info.title
        layout = cells[3]
        lay = LAYOUTS[key]
        for rel in lay.required:
            assert f"`{lay.folder}/{rel}`" in layout, (key, rel)
        assert cells[2].startswith("no") == (SOURCES[key].fetch is None), key
    assert layout_lines("dtd")[:2] == ["dtd/dtd/labels/test1.txt", "dtd/dtd/images/"]


def test_doc_explains_templates_and_prepare():
    text = DOC.read_text()
    for needle in ("'/data/{dataset}'", "/data/cifar10/cifar-10-batches-py/", "LOC_val_solution.csv",
                   "ILSVRC2012_validation_ground_truth.txt", "zsrbench data prepare", "zsrbench data check"):
        assert needle in text, needle


# --- the hint of data check ------------------------------------------------------------------------------------


def test_hints_name_data_prepare_not_a_bare_download_flag(tmp_path):
    for key, source in SOURCES.items():
        if source.fetch is not None:
            assert f"zsrbench data prepare --data-root DIR --datasets {key}" in source.how_to_obtain
            assert "pass --download to zsrbench run" in source.how_to_obtain
        assert "pass --download (" not in source.how_to_obtain and "pass --download once" not in source.how_to_obtain
    make_cifar10(tmp_path)
    result = CliRunner().invoke(data_app, ["check", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = one_line(result.output)
    hint = f"zsrbench data prepare --data-root {tmp_path} --datasets tinyimagenet,cifar100,stl10"
    assert hint in out and "imagenet," not in out.split(hint)[1].split("(")[0]  # not downloadable: not offered
    assert "stanford_cars" not in out.split(hint)[1].split("(")[0]


# --- prepare: downloads (up to torchvision's call) ---------------------------------------------------------------

EXPECTED_CALLS = {  # torchvision class and its arguments, beside root and download=True
    "cifar10": ("CIFAR10", {"train": False}), "cifar100": ("CIFAR100", {"train": False}),
    "stl10": ("STL10", {"split": "test"}), "sun397": ("SUN397", {}), "food101": ("Food101", {"split": "test"}),
    "oxford_pets": ("OxfordIIITPet", {"split": "test", "target_types": "category"}),
    "flowers102": ("Flowers102", {"split": "test"}), "dtd": ("DTD", {"split": "test", "partition": 1}),
    "eurosat": ("EuroSAT", {}), "fgvc_aircraft": ("FGVCAircraft", {"split": "test", "annotation_level": "variant"}),
    "caltech101": ("Caltech101", {"target_type": "category"}), "caltech256": ("Caltech256", {}),
    "pcam": ("PCAM", {"split": "test"}),
}


def fake_class(calls: list, key: str):
    """Stands in for torchvision's class: a download writes the tiny layout; reading goes to the real class."""
    real = getattr(tvd, EXPECTED_CALLS[key][0])

    def make(root, download=False, **kwargs):
        if not download:
            return real(root, **kwargs)
        calls.append((root, download, kwargs))
        MAKERS[key](Path(root))
        return None

    return make


UNCHECKED = {"fgvc_aircraft": ("fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b"),  # no published md5
             "tinyimagenet": ("tiny-imagenet-200.zip", "tiny-imagenet-200")}


def fake_download_url(calls: list):
    """Stands in for torchvision's download_url: writes a small archive of the fake layout (no network)."""

    def download_url(url, root, filename=None, md5=None, **kwargs):
        calls.append((url, root, filename, md5))
        key = next(k for k, (name, _) in UNCHECKED.items() if name == filename)
        Path(root, filename).write_bytes(layout_archive(filename, MAKERS[key], UNCHECKED[key][1]))

    return download_url


@pytest.mark.parametrize("key", sorted(EXPECTED_CALLS))
def test_prepare_downloads_through_the_torchvision_class(tmp_path, monkeypatch, key):
    from torchvision.datasets import utils as tvu

    cls, kwargs = EXPECTED_CALLS[key]
    calls: list = []
    downloads: list = []
    monkeypatch.setattr(tvd, cls, fake_class(calls, key))
    monkeypatch.setattr(tvu, "download_url", fake_download_url(downloads))
    result = pr.prepare_dataset(str(tmp_path / "{dataset}"), key)
    assert calls == [(str(tmp_path / key), True, kwargs)]
    if key in UNCHECKED:  # zsrbench downloads the archive and extracts it itself; the class finds the folder
        name = UNCHECKED[key][0]
        assert downloads == [(SOURCES[key].fetch.archive_url(), str(tmp_path / key), name, None)]
    else:
        assert downloads == []
    assert (result.before, result.action, result.status, result.ok) == (MISSING, pr.DOWNLOADED, FOUND, True)
    assert result.path == str(tmp_path / key / LAYOUTS[key].folder)
    again = pr.prepare_dataset(str(tmp_path / "{dataset}"), key)  # there now: no second download
    assert len(calls) == 1 and again.before == FOUND and again.ok


def test_prepare_downloads_tinyimagenet_with_the_download_utility(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tvu

    calls: list = []
    monkeypatch.setattr(tvu, "download_url", fake_download_url(calls))
    monkeypatch.setattr(tvu, "download_and_extract_archive", lambda *a, **k: pytest.fail("torchvision extracts"))
    result = pr.prepare_dataset(tmp_path, "tinyimagenet")
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", str(tmp_path), "tiny-imagenet-200.zip",
                      None)]
    assert result.ok and result.action == pr.DOWNLOADED, result.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]


@pytest.mark.parametrize("key", sorted(UNCHECKED))
def test_an_unchecked_archive_on_disk_is_extracted_by_zsrbench_not_torchvision(tmp_path, monkeypatch, key):
    from torchvision.datasets import utils as tvu

    name, top = UNCHECKED[key]
    (tmp_path / name).write_bytes(layout_archive(name, MAKERS[key], top))
    for fn in ("download_url", "download_and_extract_archive", "extract_archive"):
        monkeypatch.setattr(tvu, fn, lambda *a, **k: pytest.fail("torchvision downloads or extracts"))
    result = pr.prepare_dataset(tmp_path, key)  # FGVC-Aircraft: the real torchvision class, which finds the folder
    assert (result.before, result.action, result.ok) == (MISSING, pr.DOWNLOADED, True), result.message
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, top])  # no staging folder left
    assert len(DATASETS.get(key).build(tmp_path, download=True)) == MAKERS[key](tmp_path / "again").n_images


def test_run_download_of_fgvc_aircraft_extracts_safely(tmp_path, monkeypatch):
    from torchvision.datasets import utils as tvu

    downloads: list = []
    monkeypatch.setattr(tvu, "download_url", fake_download_url(downloads))
    monkeypatch.setattr(tvu, "extract_archive", lambda *a, **k: pytest.fail("torchvision extracts"))
    evalset = DATASETS.get("fgvc_aircraft").build(tmp_path, download=True)  # zsrbench run --download
    assert len(downloads) == 1 and len(evalset) == MAKERS["fgvc_aircraft"](tmp_path / "again").n_images


def test_ranks_extract_one_archive_once(tmp_path, monkeypatch):
    """The ranks of run --jobs N --download extract at the same time: one extracts, the others find the folder."""
    import threading

    from zsrbench.data import archives

    name, top = UNCHECKED["fgvc_aircraft"]
    (tmp_path / name).write_bytes(layout_archive(name, MAKERS["fgvc_aircraft"], top))
    real_write, started = archives._write, threading.Event()

    def slow_write(member, target):
        started.set()
        threading.Event().wait(0.002)
        real_write(member, target)

    monkeypatch.setattr(archives, "_write", slow_write)
    fetch = SOURCES["fgvc_aircraft"].fetch
    errors: list = []

    def rank():
        try:
            fetch.extract_unchecked(tmp_path)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=rank) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and started.is_set()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, top])
    assert check_dataset(tmp_path, "fgvc_aircraft").ok


def test_caltech101_leftover_archives_are_checked_before_torchvision_extracts_them(tmp_path, monkeypatch):
    """torchvision's Caltech101 extracts every .tar.gz in caltech101/caltech-101/ after its (md5-checked) download,
    including any that was there before: zsrbench checks their members first."""
    from fake_layouts import hostile_tar

    calls: list = []
    leftovers = tmp_path / "caltech101" / "caltech-101"
    hostile_tar(leftovers / "101_ObjectCategories.tar.gz", "dotdot", "101_ObjectCategories", tmp_path / "t")
    monkeypatch.setattr(tvd, "Caltech101", fake_class(calls, "caltech101"))
    with pytest.raises(UnsafeArchiveError, match="its member '../../dotdot.txt' is a name with a '..' component"):
        pr.prepare_dataset(tmp_path, "caltech101")
    assert calls == []
    (leftovers / "101_ObjectCategories.tar.gz").write_bytes(
        good_archive("x.tar.gz", "101_ObjectCategories", {"a/image_0001.jpg": b"jpeg"}))
    assert pr.prepare_dataset(tmp_path, "caltech101").ok and len(calls) == 1  # a harmless leftover: downloaded


def test_failed_download_says_what_to_fetch_by_hand_and_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "Food101", offline)
    result = pr.prepare_dataset(tmp_path, "food101")
    assert (result.action, result.failed, result.status) == (pr.DOWNLOAD_FAILED, True, MISSING)
    message = one_line(result.message)
    assert "network is unreachable" in message and SOURCES["food101"].manual in message
    assert f"Expected at {tmp_path / 'food-101'}" in message


def test_no_download_and_dry_run_call_nothing(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(tvd, "CIFAR10", fake_class(calls, "cifar10"))
    assert pr.prepare_dataset(tmp_path, "cifar10", download=False).action == pr.NOT_DOWNLOADED
    dry = pr.prepare_dataset(tmp_path / "new", "cifar10", dry_run=True)
    assert dry.action == "would download" and str(tmp_path / "new") in dry.message
    assert calls == [] and not (tmp_path / "new").exists()


def test_datasets_torchvision_cannot_download_are_fetched_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(tvd, "StanfordCars", lambda *a, **k: pytest.fail("StanfordCars cannot download"))
    for key in ("stanford_cars", "imagenet"):
        result = pr.prepare_dataset(tmp_path, key)
        assert (result.action, result.status, result.failed) == (pr.BY_HAND, MISSING, False)
        assert f"Expected at {tmp_path / LAYOUTS[key].folder}" in result.message
    assert list(tmp_path.iterdir()) == []


def test_run_download_creates_a_templated_root(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(tvd, "CIFAR10", fake_class(calls, "cifar10"))
    assert len(DATASETS.get("cifar10").build(str(tmp_path / "{dataset}"), download=True)) == 30
    assert calls == [(str(tmp_path / "cifar10"), True, {"train": False})]


# --- prepare: checksums of what is there ---------------------------------------------------------------------


def test_checksums_of_present_files_are_verified(tmp_path, monkeypatch):
    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", pr.md5_of(batch)]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": pr.md5_of(batch.parent / "batches.meta")})
    result = pr.prepare_dataset(tmp_path, "cifar10")
    assert (result.action, result.ok) == (pr.VERIFIED, True) and "test_batch" in result.message

    before = batch.read_bytes()
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", "0" * 32]])
    result = pr.prepare_dataset(tmp_path, "cifar10")
    assert (result.action, result.failed, result.ok) == (pr.MISMATCH, True, False)
    assert f"{batch} has md5 {pr.md5_of(batch)}, torchvision publishes {'0' * 32}" in result.message
    assert f"move the folder {batch.parent} away" in result.message
    assert f"zsrbench data prepare --data-root {tmp_path} --datasets cifar10" in result.message
    assert batch.read_bytes() == before  # nothing changed
    assert pr.prepare_dataset(tmp_path, "cifar10", verify=False).ok


def test_known_checksums_come_from_torchvision():
    root = Path("/data")
    cifar = dict(pr.known_checksums("cifar10", root))
    assert cifar[root / "cifar-10-batches-py" / "test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert root / "cifar-10-python.tar.gz" in cifar
    flowers = {p.name for p, _ in pr.known_checksums("flowers102", root)}
    assert {"imagelabels.mat", "setid.mat"} <= flowers
    assert pr.known_checksums("eurosat", root) == []  # torchvision publishes none zsrbench can read


def test_wrong_layout_is_left_as_is(tmp_path, monkeypatch):
    (tmp_path / "food-101" / "images").mkdir(parents=True)
    monkeypatch.setattr(tvd, "Food101", lambda *a, **k: pytest.fail("no download over existing data"))
    result = pr.prepare_dataset(tmp_path, "food101")
    assert (result.before, result.action, result.status) == (WRONG_LAYOUT, pr.LEFT_AS_IS, WRONG_LAYOUT)
    assert "meta" in result.message and sorted(p.name for p in (tmp_path / "food-101").iterdir()) == ["images"]


def test_cli_prepare(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(tvd, "CIFAR10", fake_class(calls, "cifar10"))
    runner = CliRunner()
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "cifar10"])
    assert result.exit_code == 0, result.output
    assert "downloaded" in result.output and "1 of 1 datasets ready" in result.output and len(calls) == 1
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "cifar10,stanford_cars"])
    assert result.exit_code == 1
    assert str(tmp_path / "stanford_cars") in one_line(result.output) and "fetch by hand" in result.output
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "cifar11"])
    assert result.exit_code == 2 and "Did you mean" in result.output
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "micro_shape"])
    assert result.exit_code == 2 and "tga16" in result.output


# --- the ImageNet sort -------------------------------------------------------------------------------------------


def flat_val(val: Path, wnids: list[str], n: int, seed: int = 0) -> dict[str, str]:
    """``n`` tiny JPEGs directly in ``val`` with random labels among ``wnids``; returns stem -> wnid."""
    rng = random.Random(seed)
    labels = {f"ILSVRC2012_val_{i:08d}": wnids[i - 1] if i <= len(wnids) else rng.choice(wnids)
              for i in range(1, n + 1)}
    for stem, wnid in labels.items():
        save_jpeg(val / f"{stem}.JPEG", wnids.index(wnid) % 1000, (4, 4))
    return labels


def write_csv(path: Path, labels: dict[str, str]) -> None:
    rows = [f"{stem},{w} 10 20 30 40 {w} 1 2 3 4" for stem, w in labels.items()]
    path.write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")


def devkit_files(labels: dict[str, str]) -> tuple[bytes, str]:
    """(meta.mat, ground truth text) as the ILSVRC2012 devkit has them: ids in shuffled wnid order + an inner node."""
    wnids = imagenet_wnids()
    order = wnids[:]
    random.Random(1).shuffle(order)
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    synsets = np.zeros((len(order) + 1, 1), dtype=dtype)
    for i, wnid in enumerate(order):
        synsets[i, 0] = (i + 1, wnid, "w", "g", 0)
    synsets[len(order), 0] = (len(order) + 1, "n00001740", "entity", "g", 3)  # not a leaf: not a class
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets})
    id_of = {w: i + 1 for i, w in enumerate(order)}
    stems = sorted(labels)
    return buf.getvalue(), "".join(f"{id_of[labels[s]]}\n" for s in stems)


def write_devkit(folder: Path, labels: dict[str, str], archive: bool) -> None:
    meta, truth = devkit_files(labels)
    if not archive:
        (folder / "meta.mat").write_bytes(meta)
        (folder / iv.GROUND_TRUTH).write_text(truth)
        return
    with tarfile.open(folder / iv.DEVKIT_ARCHIVE, "w:gz") as tar:
        for name, data in (("meta.mat", meta), (iv.GROUND_TRUTH, truth.encode())):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def assert_sorted(val: Path, labels: dict[str, str]) -> None:
    assert iv.loose_images(val) == []
    found = sorted((p.parent.name, p.stem) for p in val.glob("*/*.JPEG"))
    assert found == sorted((w, s) for s, w in labels.items())  # every image exactly once, in its class


WNIDS = imagenet_wnids()[:5]


@pytest.mark.parametrize("form", ["csv", "devkit", "devkit-archive", "meta.bin"])
def test_sort_flat_val_from_either_labels_file(tmp_path, form):
    val = tmp_path / "imagenet" / "val"
    labels = flat_val(val, WNIDS, 12)
    if form == "csv":
        write_csv(tmp_path / "imagenet" / iv.KAGGLE_CSV, labels)
    elif form == "meta.bin":
        torch.save(({w: ("name",) for w in WNIDS}, [labels[s] for s in sorted(labels)]),
                   tmp_path / "imagenet" / "meta.bin")
    else:
        write_devkit(tmp_path / "imagenet", labels, archive=form == "devkit-archive")
    inodes = {p.stem: p.stat().st_ino for p in val.iterdir()}
    found = iv.find_labels([tmp_path / "imagenet"], "test")
    assert found.wnid_of == labels
    report = iv.sort_val(val, found)
    assert (report.moved, report.already_sorted, report.n_sorted, report.n_classes) == (12, 0, 12, 5)
    assert_sorted(val, labels)
    assert {p.stem: p.stat().st_ino for p in val.glob("*/*.JPEG")} == inodes  # moved, never copied
    again = iv.sort_val(val, found)  # idempotent
    assert (again.moved, again.already_sorted) == (0, 12)
    assert_sorted(val, labels)


def test_interrupted_sort_is_resumed_without_losing_a_file(tmp_path):
    val = tmp_path / "val"
    labels = flat_val(val, WNIDS, 20)
    write_csv(tmp_path / iv.KAGGLE_CSV, labels)
    found = iv.read_labels(tmp_path / iv.KAGGLE_CSV)
    moves = []

    def stop_after_7(src, dst):
        if len(moves) == 7:
            raise KeyboardInterrupt
        moves.append(src)
        os.rename(src, dst)

    with pytest.raises(KeyboardInterrupt):
        iv.sort_val(val, found, move=stop_after_7)
    assert len(iv.loose_images(val)) == 13 and len(list(val.glob("*/*.JPEG"))) == 7  # nothing lost
    report = iv.sort_val(val, found)
    assert (report.moved, report.already_sorted, report.n_sorted) == (13, 7, 20)
    assert_sorted(val, labels)


def test_no_labels_is_an_error_naming_both_forms(tmp_path):
    val = tmp_path / "imagenet" / "val"
    flat_val(val, WNIDS, 3)
    with pytest.raises(ZsrError) as err:
        iv.find_labels([tmp_path / "imagenet", tmp_path], "ImageNet")
    message = str(err.value)
    for name in (iv.KAGGLE_CSV, iv.GROUND_TRUTH, "meta.mat", iv.DEVKIT_ARCHIVE, "--imagenet-labels"):
        assert name in message
    with pytest.raises(ZsrError, match="meta.mat"):  # a ground truth file without its meta.mat
        (tmp_path / iv.GROUND_TRUTH).write_text("1\n2\n3\n")
        iv.read_labels(tmp_path / iv.GROUND_TRUTH)
    assert len(iv.loose_images(val)) == 3


def test_sort_refuses_a_folder_that_is_neither_flat_nor_sorted(tmp_path):
    val = tmp_path / "val"
    labels = flat_val(val, WNIDS, 6)
    found = iv.ValLabels("labels.csv", labels)
    before = sorted(p.name for p in val.iterdir())

    (val / "val").mkdir()  # e.g. extracted one level too deep
    with pytest.raises(ZsrError, match="neither flat nor sorted.*val/"):
        iv.sort_val(val, found)
    (val / "val").rmdir()
    save_jpeg(val / "holiday.jpg", 0, (4, 4))  # an image the labels do not list
    with pytest.raises(ZsrError, match="1 of the 7 images.*holiday.jpg"):
        iv.sort_val(val, found)
    (val / "holiday.jpg").unlink()
    stem = sorted(labels)[0]  # an image both loose and in its class folder
    save_jpeg(val / labels[stem] / f"{stem}.JPEG", 0, (4, 4))
    with pytest.raises(ZsrError, match="both loose .* and in a class folder"):
        iv.sort_val(val, found)
    os.remove(val / labels[stem] / f"{stem}.JPEG")
    other = next(w for w in WNIDS if w != labels[stem])  # an image in another class's folder
    (val / other).mkdir()
    os.rename(val / f"{stem}.JPEG", val / other / f"{stem}.JPEG")
    with pytest.raises(ZsrError, match="another class"):
        iv.sort_val(val, found)
    os.rename(val / other / f"{stem}.JPEG", val / f"{stem}.JPEG")
    with pytest.raises(ZsrError, match="not ImageNet-1k wnids"):
        iv.sort_val(val, iv.ValLabels("x.csv", {**labels, stem: "n99999999"}))
    assert sorted(p.name for p in val.iterdir() if p.is_file()) == before  # nothing was moved
    assert not any(val.glob("*/*.JPEG"))


def test_prepare_sorts_imagenet_and_check_finds_it(tmp_path, monkeypatch):
    wnids = imagenet_wnids()
    val = tmp_path / "imagenet" / "val"
    labels = flat_val(val, wnids, 1003)
    (tmp_path / "elsewhere").mkdir()
    write_csv(tmp_path / "elsewhere" / iv.KAGGLE_CSV, labels)
    assert check_dataset(tmp_path, "imagenet").status == WRONG_LAYOUT

    runner = CliRunner()
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "imagenet"])
    assert result.exit_code == 1  # no labels where zsrbench looks
    assert iv.KAGGLE_CSV in result.output and iv.GROUND_TRUTH in one_line(result.output)
    assert len(iv.loose_images(val)) == 1003

    real_rename = os.rename
    count = [0]

    def interrupted(src, dst):
        count[0] += 1
        if count[0] > 1000:  # every class folder holds an image by now: a half-sorted val/ must not read as found
            raise KeyboardInterrupt
        real_rename(src, dst)

    with pytest.raises(KeyboardInterrupt):
        iv.sort_val(val, iv.read_labels(tmp_path / "elsewhere" / iv.KAGGLE_CSV), move=interrupted)
    status = check_dataset(tmp_path, "imagenet")
    assert status.status == WRONG_LAYOUT and "interrupted" in status.message

    labels_file = str(tmp_path / "elsewhere" / iv.KAGGLE_CSV)
    result = runner.invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "imagenet",
                                      "--imagenet-labels", labels_file])
    assert result.exit_code == 0, result.output
    assert "moved 3 images" in one_line(result.output) and "1 of 1 datasets ready" in result.output
    assert_sorted(val, labels)
    status = check_dataset(tmp_path, "imagenet")
    assert (status.status, status.n_images, status.n_classes) == (FOUND, 1003, 1000)
    again = pr.prepare_dataset(tmp_path, "imagenet", imagenet_labels=labels_file)
    assert again.ok and again.action == pr.NOTHING  # sorted: nothing to do


def test_prepare_extracts_imagenet_archives_through_torchvision(tmp_path, monkeypatch):
    folder = tmp_path / "imagenet"
    folder.mkdir()
    for name in (iv.DEVKIT_ARCHIVE, "ILSVRC2012_img_val.tar"):
        (folder / name).write_bytes(b"archive")
    calls = []

    def fake_imagenet(root, split):
        calls.append((root, split))
        MAKERS["imagenet"](tmp_path)

    monkeypatch.setattr(tvd, "ImageNet", fake_imagenet)
    result = pr.prepare_dataset(tmp_path, "imagenet", verify=False)
    assert calls == [(str(folder), "val")]
    assert (result.action, result.status, result.ok) == (pr.EXTRACTED, FOUND, True)


def test_a_labels_file_that_gives_an_image_two_classes_is_refused(tmp_path):
    val = tmp_path / "imagenet" / "val"
    labels = flat_val(val, WNIDS, 6)
    stem = sorted(labels)[2]
    other = next(w for w in WNIDS if w != labels[stem])
    write_csv(tmp_path / "imagenet" / iv.KAGGLE_CSV, labels)
    text = (tmp_path / "imagenet" / iv.KAGGLE_CSV).read_text()
    (tmp_path / "imagenet" / iv.KAGGLE_CSV).write_text(text + f"{stem}.JPEG,{other} 1 2 3 4\n")
    before = sorted(p.name for p in val.iterdir())
    result = pr.prepare_dataset(tmp_path, "imagenet")  # the labels found beside val/
    assert (result.action, result.failed) == (pr.REFUSED, True)
    message = one_line(result.message)
    line = 2 + sorted(labels, reverse=True).index(stem)  # write_csv writes the rows in reverse order
    assert f"gives the image {stem} two classes, {labels[stem]} (line {line}) and {other} (line 8)" in message
    assert sorted(p.name for p in val.iterdir()) == before  # nothing moved

    result = CliRunner().invoke(data_app, ["prepare", "--data-root", str(tmp_path), "--datasets", "imagenet",
                                           "--imagenet-labels", str(tmp_path / "imagenet" / iv.KAGGLE_CSV)])
    assert result.exit_code == 2 and "Traceback" not in result.output  # a bad --imagenet-labels: a bad argument
    assert f"gives the image {stem} two classes" in one_line(result.output) and "Nothing was moved" in result.output
    assert sorted(p.name for p in val.iterdir()) == before


def test_the_same_image_twice_with_one_class_and_a_bom_are_accepted(tmp_path):
    labels = {"ILSVRC2012_val_00000001": WNIDS[0], "ILSVRC2012_val_00000002": WNIDS[1]}
    rows = "".join(f"{s},{w} 1 2 3 4\n" for s, w in labels.items())
    path = tmp_path / iv.KAGGLE_CSV
    path.write_bytes("\ufeffImageId,PredictionString\n".encode() + (rows + rows).encode())
    assert iv.read_labels(path).wnid_of == labels


@pytest.mark.parametrize("content,words", [
    (b"ImageId,PredictionString\nILSVRC2012_val_00000001,\xe9 1\n", "is not Kaggle's LOC_val_solution.csv: it is not "
                                                                    "UTF-8 text (invalid continuation byte at byte 49"),
    (b"ImageId,PredictionString\nx,\"" + b"y" * 200_000 + b"\"\n", "line 2 cannot be read as CSV (field larger than"),
    (b"ImageId,PredictionString\nx,n01440764\x00\n", "it holds a NUL byte (at byte 36)"),
])
def test_a_labels_file_that_is_not_the_kaggle_csv_is_refused(tmp_path, content, words):
    path = tmp_path / iv.KAGGLE_CSV
    path.write_bytes(content)
    with pytest.raises(ZsrError) as err:
        iv.read_labels(path)
    assert words in one_line(str(err.value)) and "\n" not in str(err.value)
    with pytest.raises(ZsrError):  # found in a folder, as the sort looks for it
        iv.find_labels([tmp_path], "test")
