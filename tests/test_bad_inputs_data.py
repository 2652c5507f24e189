"""The bad-input matrix of data preparation (``zsrbench data prepare``, ``data check`` and ``run --download``).

Runs on the harness of tests/test_bad_inputs.py: every case exits 2 (the ``CASES_EXIT_1`` ones 1: a dataset that
could not be prepared, the others still are) with a one-paragraph message holding the case's words, no
traceback, results/ and leaderboards/ unchanged. On top, the scratch folder of a case whose setup records it is
unchanged afterwards, byte for byte: a hostile archive wrote nothing outside its data root (nor inside: nothing
is extracted), and a refused labels file moved no image.

The hostile archives are real tar and zip files, named as torchvision looks for them: FGVC-Aircraft's
``fgvc-aircraft-2013b.tar.gz`` and Tiny-ImageNet's ``tiny-imagenet-200.zip`` (neither has a published checksum),
each with a harmless member first and then one of: a ``../../`` name (two levels above the data root), an
absolute name (under the scratch folder), a symbolic link to a folder outside followed by a file written
through it, a hard link to a file outside followed by a file of the same name, a character device.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Callable

import pytest

from fake_layouts import (
    HOSTILE_KINDS,
    ZIP_HOSTILE_KINDS,
    good_archive,
    hostile_targets,
    hostile_tar,
    hostile_zip,
    imagenet_wnids,
    random_bytes,
    save_jpeg,
    tree_state,
)
from test_bad_inputs import check_case, make_world

RECORDED: dict[str, dict[str, str]] = {}  # scratch folder -> its tree after the setup (checked after the case)
ARCHIVES = {"fgvc": ("fgvc_aircraft", "fgvc-aircraft-2013b.tar.gz", "fgvc-aircraft-2013b"),
            "tiny": ("tinyimagenet", "tiny-imagenet-200.zip", "tiny-imagenet-200")}
RUN = ["run", "--protocol", "tga16", "--download", "--model", "zsr-tiny", "--attack", "pgd", "--steps", "1",
       "--quiet"]
LONG = "x" * 300


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory)


def _offline(monkeypatch) -> None:
    """No case may reach the network: a download attempt fails (and so does the case, which expects no download)."""
    import urllib.request

    from torchvision.datasets import utils as tvu

    def refuse(*args, **kwargs):
        raise OSError(f"no network in the bad-input matrix (a download of {args[0]} was tried)")

    # below torchvision's download_url, which must still run: it finds an archive on disk and returns
    for name in ("_urlretrieve", "_get_redirect_url", "download_file_from_google_drive"):
        monkeypatch.setattr(tvu, name, refuse, raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _record(t: Path) -> None:
    RECORDED[str(t)] = tree_state(t)


# ------------------------------------------------------------------------------------------ setups
def _archive_setup(which: str, kind: str) -> Callable[..., dict[str, str]]:
    _, name, top = ARCHIVES[which]

    def setup(t: Path, monkeypatch) -> dict[str, str]:
        _offline(monkeypatch)
        data = hostile_targets(t)["data"]
        (hostile_zip if name.endswith(".zip") else hostile_tar)(data / name, kind, top, t)
        _record(t)
        return {"data": str(data)}

    return setup


def _damaged_archive(which: str, how: str) -> Callable[..., dict[str, str]]:
    _, name, top = ARCHIVES[which]

    def setup(t: Path, monkeypatch) -> dict[str, str]:
        _offline(monkeypatch)
        data = t / "data"
        data.mkdir()
        if how == "empty":
            (data / name).write_bytes(b"")
        elif how == "garbage":
            (data / name).write_bytes(b"PK\x03\x04 this is no archive" * 10)
        else:  # a harmless archive cut in the middle of its one big member
            blob = good_archive(name, top, {"big.bin": random_bytes(1 << 16)})
            (data / name).write_bytes(blob[: len(blob) // 2])
        _record(t)
        return {"data": str(data)}

    return setup


def _flat_imagenet(data: Path) -> list[str]:
    val = data / "imagenet" / "val"
    for i in (1, 2, 3):
        save_jpeg(val / f"ILSVRC2012_val_{i:08d}.JPEG", i, (4, 4))
    return imagenet_wnids()[:4]


def imagenet_labels(t: Path, monkeypatch) -> dict[str, str]:
    """A flat ImageNet val/ of three images and labels files that are not what they claim to be."""
    _offline(monkeypatch)
    data = t / "data"
    w = _flat_imagenet(data)
    head = b"ImageId,PredictionString\n"
    rows = [f"ILSVRC2012_val_{i:08d},{w[i - 1]} 1 2 3 4\n".encode() for i in (1, 2, 3)]
    (t / "not-utf8.csv").write_bytes(head + rows[0] + b"ILSVRC2012_val_00000002,\xff\xfe 1 2 3 4\n" + rows[2])
    (t / "latin1.csv").write_bytes(head + rows[0] + rows[1] + rows[2] + "Zürich,\xe9\n".encode("latin-1"))
    (t / "big-field.csv").write_bytes(head + rows[0] + b"ILSVRC2012_val_00000002," + b"n01440764 " * 20_000
                                      + b"\n" + rows[2])
    (t / "nul.csv").write_bytes(head + rows[0] + rows[1].replace(b" 1", b"\x00 1") + rows[2])
    (t / "two-classes.csv").write_bytes(head + b"".join(rows) + f"ILSVRC2012_val_00000002,{w[3]} 5\n".encode())
    with tarfile.open(t / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        for name, blob in (("meta.mat", b"not read"), ("ILSVRC2012_validation_ground_truth.txt", b"\xff\xfe1\n")):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/data/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (t / "gt").mkdir()
    (t / "gt" / "ILSVRC2012_validation_ground_truth.txt").write_bytes(b"1\n\xff\n3\n")
    (t / "gt" / "meta.mat").write_bytes(b"not read")
    _record(t)
    return {"data": str(data), "a": w[1], "b": w[3]}


def labels_found_not_utf8(t: Path, monkeypatch) -> dict[str, str]:
    """A flat val/ with a LOC_val_solution.csv beside it that is not UTF-8 (found, not passed)."""
    _offline(monkeypatch)
    data = t / "data"
    _flat_imagenet(data)
    (data / "imagenet" / "LOC_val_solution.csv").write_bytes(b"ImageId,PredictionString\n\xff\xfe,\n")
    _record(t)
    return {"data": str(data)}


def record_only(t: Path, monkeypatch) -> dict[str, str]:
    _offline(monkeypatch)
    (t / "data").mkdir()
    _record(t)
    return {"data": str(t / "data")}


SETUPS: dict[str, Callable[..., dict[str, str]]] = {
    **{f"{w}-{k}": _archive_setup(w, k) for w in ARCHIVES
       for k in (HOSTILE_KINDS if w == "fgvc" else ZIP_HOSTILE_KINDS)},
    **{f"{w}-{how}": _damaged_archive(w, how) for w in ARCHIVES for how in ("empty", "garbage", "truncated")},
    "labels": imagenet_labels, "labels-found": labels_found_not_utf8, "plain": record_only,
}

# ------------------------------------------------------------------------------------------ cases
REFUSED = {  # kind -> what the message says of the member (with {top}: the archive's folder)
    "dotdot": "its member '../../dotdot.txt' is a name with a '..' component",
    "absolute": "its member '{T}/abs-target/absolute.txt' is an absolute name",
    "symlink": "its member '{top}/link' is a symbolic link (to '{T}/link-target')",
    "hardlink": "its member '{top}/hard' is a hard link (to '{T}/victim.txt')",
    "device": "its member '{top}/null' is a character device",
}


def _archive_cases() -> list[tuple[str, str | None, list[str], str]]:
    cases = []
    for which, (key, _, top) in ARCHIVES.items():
        for kind in HOSTILE_KINDS if which == "fgvc" else ZIP_HOSTILE_KINDS:
            words = REFUSED[kind].replace("{top}", top)
            cases.append((f"data-prepare-{which}-{kind}", f"{which}-{kind}",
                          ["data", "prepare", "--data-root", "{data}", "--datasets", key], words))
            cases.append((f"run-download-{which}-{kind}", f"{which}-{kind}",
                          [*RUN, "--datasets", key, "--data-root", "{data}"], words))
    return cases


PREPARE_IMAGENET = ["data", "prepare", "--data-root", "{data}", "--datasets", "imagenet", "--imagenet-labels"]

# (id, setup or None, argv with {T} = the scratch folder and {key} from the setup, what the message must say)
CASES: list[tuple[str, str | None, list[str], str]] = [
    *_archive_cases(),
    # the ImageNet labels file (--imagenet-labels): read before anything is done, nothing moved
    ("data-prepare-labels-not-utf8", "labels", [*PREPARE_IMAGENET, "{T}/not-utf8.csv"],
     "{T}/not-utf8.csv is not Kaggle's LOC_val_solution.csv: it is not UTF-8 text"),
    ("data-prepare-labels-latin1", "labels", [*PREPARE_IMAGENET, "{T}/latin1.csv"],
     "{T}/latin1.csv is not Kaggle's LOC_val_solution.csv: it is not UTF-8 text"),
    ("data-prepare-labels-field-over-csv-limit", "labels", [*PREPARE_IMAGENET, "{T}/big-field.csv"],
     "{T}/big-field.csv is not Kaggle's LOC_val_solution.csv: line 3 cannot be read as CSV (field larger than "
     "field limit"),
    ("data-prepare-labels-nul-byte", "labels", [*PREPARE_IMAGENET, "{T}/nul.csv"],
     "{T}/nul.csv is not Kaggle's LOC_val_solution.csv: it holds a NUL byte"),
    ("data-prepare-labels-image-with-two-classes", "labels", [*PREPARE_IMAGENET, "{T}/two-classes.csv"],
     "gives the image ILSVRC2012_val_00000002 two classes, {a} (line 3) and {b} (line 5)"),
    ("data-prepare-labels-devkit-not-utf8", "labels", [*PREPARE_IMAGENET, "{T}/ILSVRC2012_devkit_t12.tar.gz"],
     "is not the devkit's ILSVRC2012_validation_ground_truth.txt: it is not UTF-8 text"),
    ("data-prepare-labels-ground-truth-not-utf8", "labels",
     [*PREPARE_IMAGENET, "{T}/gt/ILSVRC2012_validation_ground_truth.txt"],
     "is not the devkit's ILSVRC2012_validation_ground_truth.txt: it is not UTF-8 text"),
    ("data-prepare-labels-name-too-long", "labels", [*PREPARE_IMAGENET, "{T}/" + LONG], "is too long (300 bytes"),
    ("data-prepare-labels-missing", "labels", [*PREPARE_IMAGENET, "{T}/nope.csv"], "{T}/nope.csv does not exist"),
    # paths the filesystem cannot look up
    ("data-check-root-name-too-long", None, ["data", "check", "--data-root", "{T}/" + LONG], "is too long (300 bytes"),
    ("data-prepare-root-name-too-long", "plain", ["data", "prepare", "--data-root", "{T}/" + LONG],
     "is too long (300 bytes"),
    ("data-check-template-name-too-long", None, ["data", "check", "--data-root", "{T}/" + LONG + "/{{dataset}}"],
     "is too long (300 bytes"),
    ("data-prepare-template-name-too-long", "plain",
     ["data", "prepare", "--data-root", "{T}/" + LONG + "/{{dataset}}", "--datasets", "cifar10"],
     "is too long (300 bytes"),
    ("data-check-root-over-path-max", None, ["data", "check", "--data-root", "{T}/" + "/".join(["y" * 250] * 17)],
     "longer than 4096 bytes"),
]

# Cases where one dataset could not be prepared: the command goes on with the others and exits 1.
CASES_EXIT_1: list[tuple[str, str | None, list[str], str]] = [
    ("data-prepare-labels-found-not-utf8", "labels-found",
     ["data", "prepare", "--data-root", "{data}", "--datasets", "imagenet"],
     "{data}/imagenet/LOC_val_solution.csv is not Kaggle's LOC_val_solution.csv: it is not UTF-8 text"),
    *[(f"data-prepare-{which}-{how}-archive", f"{which}-{how}",
       ["data", "prepare", "--data-root", "{data}", "--datasets", ARCHIVES[which][0]],
       f"Cannot extract {{data}}/{ARCHIVES[which][1]}")
      for which in ARCHIVES for how in ("empty", "garbage", "truncated")],
]


def _unchanged(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    before = RECORDED.pop(str(scratch), None)
    if before is not None:
        after = tree_state(scratch)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"the case changed (or wrote) {changed}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch, SETUPS)
    _unchanged(tmp_path)


@pytest.mark.parametrize("case", CASES_EXIT_1, ids=[c[0] for c in CASES_EXIT_1])
def test_bad_input_of_one_dataset(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch, SETUPS, code=1)
    _unchanged(tmp_path)


def test_the_matrix_covers_every_hostile_archive():
    ids = [c[0] for c in CASES + CASES_EXIT_1]
    assert len(set(ids)) == len(ids)
    for kind in HOSTILE_KINDS:
        assert f"data-prepare-fgvc-{kind}" in ids and f"run-download-fgvc-{kind}" in ids
    for kind in ZIP_HOSTILE_KINDS:
        assert f"data-prepare-tiny-{kind}" in ids
