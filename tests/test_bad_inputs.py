"""The bad-input matrix: every case exits 2 with a message that says what to do, prints no traceback, and leaves
the trees of ``results/`` and ``leaderboards/`` byte-identical (hidden files included).

Each case runs in a fresh copy of a small world (a synthetic run's results and leaderboard, in the current
folder, so the default paths point at it); inputs the case needs are written by its setup into a scratch folder.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zsrbench.cli import app

runner = CliRunner()
RUN = ["run", "--protocol", "synthetic", "--steps", "2", "--quiet"]
TREES = ("results", "leaderboards")


def make_world(tmp_path_factory) -> Path:
    """A synthetic run's results and leaderboard, in a folder the cases copy."""
    w = tmp_path_factory.mktemp("world")
    res = runner.invoke(app, [*RUN, "--attack", "pgd", "--results-dir", str(w / "results"), "--leaderboard-dir",
                              str(w / "leaderboards")])
    assert res.exit_code == 0, res.output
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under the trees, hidden ones included: path -> sha256 (folders: 'dir')."""
    out: dict[str, str] = {}
    for tree in TREES:
        for p in sorted((root / tree).rglob("*")):
            rel = str(p.relative_to(root))
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ------------------------------------------------------------------------------------------ inputs cases need
class Evil:
    """Unpickling this runs a command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def malicious_cifar(t: Path) -> dict[str, str]:
    folder = t / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    payload = pickle.dumps({"data": Evil(t / "MARKER"), "labels": [0]})
    for name in ("test_batch", "batches.meta", "data_batch_1"):
        (folder / name).write_bytes(payload)
    return {"data": str(t / "data")}


def checkpoint_files(t: Path) -> dict[str, str]:
    (t / "garbage.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 20)
    (t / "pickle.bin").write_bytes(pickle.dumps({"weights": Evil(t / "MARKER")}))
    (t / "folder").mkdir()
    (t / "folder" / "open_clip_pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil(t / "MARKER")}))
    from zsrbench.models.clip import build_clip

    torch.manual_seed(0)
    visual = build_clip("zsr-micro").model.visual.state_dict()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in visual.items()},
               t / "nan.pt")
    return {}


def empty_data_root(t: Path) -> dict[str, str]:
    (t / "empty").mkdir()
    (t / "afile").write_text("not a folder")
    return {}


def long_name(t: Path) -> dict[str, str]:
    return {"long": str(t / ("x" * 300) / "results")}


def plain_file(t: Path) -> dict[str, str]:
    (t / "afile").write_text("keep me")
    return {}


def disk_full(t: Path, monkeypatch) -> dict[str, str]:
    """Every fsync under zsrbench's writes fails as on a full disk (the evaluation itself runs)."""
    import errno

    from zsrbench.leaderboard import atomic

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    return {}


SETUPS: dict[str, Callable[..., dict[str, str]]] = {
    "cifar": malicious_cifar, "ckpt": checkpoint_files, "roots": empty_data_root, "long": long_name,
    "file": plain_file, "diskfull": disk_full,
}

# (id, setup or None, argv with {T} = the scratch folder and {key} from the setup, what the message must say)
CASES: list[tuple[str, str | None, list[str], str]] = [
    # run: names
    ("run-unknown-defense", None, [*RUN, "--defense", "tecoaa"], "Unknown defense"),
    ("run-unknown-attack", None, [*RUN, "--attack", "pgdd"], "Did you mean 'pgd'"),
    ("run-unknown-protocol", None, [*RUN, "--protocol", "tga17"], "Unknown protocol"),
    ("run-unknown-dataset", None, [*RUN, "--datasets", "cifar11"], "Unknown dataset"),
    ("run-empty-dataset-list", None, [*RUN, "--datasets", ","], "names no dataset"),
    ("run-dataset-twice", None, [*RUN, "--datasets", "synthetic_colors,synthetic_colors"], "more than once"),
    ("run-attack-twice", None, [*RUN, "--attack", "pgd,pgd"], "more than once"),
    ("run-empty-suite", None, [*RUN, "--attack", ","], "No attack given"),
    ("run-unknown-subset", None, [*RUN, "--subset", "tiny"], "has no subset"),
    ("run-subset-and-n", None, ["run", "--protocol", "micro", "--subset", "quick", "--n-samples", "3"],
     "pass one of them"),
    # run: numbers
    ("run-eps-zero", None, [*RUN, "--eps", "0"], "(0, 255]"),
    ("run-eps-nan", None, [*RUN, "--eps", "nan"], "(0, 255]"),
    ("run-eps-inf", None, [*RUN, "--eps", "inf"], "(0, 255]"),
    ("run-eps-negative", None, [*RUN, "--eps", "-1"], "(0, 255]"),
    ("run-eps-too-large", None, [*RUN, "--eps", "300"], "(0, 255]"),
    ("run-step-inf", None, [*RUN, "--step", "inf"], "--step must be a finite number"),
    ("run-step-nan", None, [*RUN, "--step", "nan"], "--step must be a finite number"),
    ("run-step-zero", None, [*RUN, "--step", "0"], "--step must be positive"),
    ("run-kappa-nan", None, [*RUN, "--attack", "cw", "--kappa", "nan"], "--kappa must be a finite number"),
    ("run-kappa-negative", None, [*RUN, "--attack", "cw", "--kappa", "-1"], "--kappa must not be negative"),
    ("run-steps-zero", None, [*RUN, "--steps", "0"], "--steps must be a whole number ≥ 1"),
    ("run-restarts-zero", None, [*RUN, "--restarts", "0"], "--restarts must be a whole number ≥ 1"),
    ("run-eot-zero", None, [*RUN, "--eot", "0"], "--eot must be a whole number ≥ 1"),
    ("run-criterion", None, [*RUN, "--criterion", "foo"], "--criterion must be one of last, any"),
    ("run-param-not-taken", None, [*RUN, "--attack", "aa-lite", "--eot", "4"], "takes no parameter"),
    ("run-kappa-for-pgd", None, [*RUN, "--kappa", "3"], "takes no parameter kappa"),
    ("run-batch-zero", None, [*RUN, "--batch-size", "0"], "--batch-size must be a whole number ≥ 1"),
    ("run-n-samples-zero", None, [*RUN, "--n-samples", "0"], "--n-samples must be a whole number ≥ 1"),
    ("run-seed-negative", None, [*RUN, "--seed", "-1"], "--seed must be a whole number ≥ 0"),
    ("run-precision", None, [*RUN, "--precision", "fp8"], "Unknown precision"),
    ("run-shard-range", None, [*RUN, "--shard", "3/2"], "0 ≤ K < N"),
    ("run-shard-form", None, [*RUN, "--shard", "x"], "--shard takes K/N"),
    ("run-jobs", None, [*RUN, "--jobs", "many"], "--jobs"),
    # run: devices
    ("run-device-tpu", None, [*RUN, "--device", "tpu"], "Unknown device 'tpu'"),
    ("run-device-cpu-index", None, [*RUN, "--device", "cpu:1"], "Unknown device"),
    ("run-device-cuda-letters", None, [*RUN, "--device", "cuda:x"], "Unknown device"),
    # run: weights
    ("run-sha-without-checkpoint", None, [*RUN, "--checkpoint-sha256", "ab" * 32], "no --checkpoint was given"),
    ("run-sha-malformed", "ckpt", [*RUN, "--checkpoint", "{T}/nan.pt", "--checkpoint-sha256", "xyz"],
     "64 hexadecimal characters"),
    ("run-checkpoint-nan-weights", "ckpt", [*RUN, "--model", "zsr-micro", "--checkpoint", "{T}/nan.pt"],
     "hold NaN or inf values"),
    ("run-checkpoint-garbage-safetensors", "ckpt", [*RUN, "--model", "zsr-micro", "--checkpoint",
                                                    "{T}/garbage.safetensors"], "garbage.safetensors"),
    ("run-checkpoint-pickle-objects", "ckpt", [*RUN, "--model", "zsr-micro", "--checkpoint", "{T}/pickle.bin"],
     "not a weights file"),
    ("run-pretrained-pickle", "ckpt", [*RUN, "--model", "zsr-micro", "--pretrained", "{T}/pickle.bin"],
     "pickle.bin"),
    ("run-checkpoint-folder-without-config", "ckpt", [*RUN, "--model", "zsr-micro", "--checkpoint", "{T}/folder"],
     "folder"),
    ("run-disk-full", "diskfull", [*RUN, "--attack", "cw", "--steps", "1"], "the disk is full"),
    ("run-checkpoint-missing", None, [*RUN, "--checkpoint", "{T}/nope.pt", "--model", "zsr-tiny"], "does not exist"),
    ("run-trainable-without-recipe", "roots", ["run", "--defense", "tecoa", "--protocol", "tga16", "--data-root",
                                               "{T}/empty", "--quiet"], "zsrbench train --defense tecoa"),
    ("run-trainable-other-model", None, ["run", "--defense", "tecoa", "--protocol", "micro", "--model", "zsr-tiny"],
     "needs its fine-tuned weights"),
    # run: data
    ("run-no-data-root", None, ["run", "--protocol", "tga16", "--quiet"], "--data-root"),
    ("run-data-root-missing", None, ["run", "--protocol", "tga16", "--data-root", "{T}/nope"], "does not exist"),
    ("run-data-root-file", "roots", ["run", "--protocol", "tga16", "--data-root", "{T}/afile"], "is a file"),
    ("run-data-root-empty", "roots", ["run", "--protocol", "tga16", "--data-root", "{T}/empty"],
     "16 of the 16 datasets are not usable"),
    ("run-malicious-cifar", "cifar", ["run", "--protocol", "tga16", "--datasets", "cifar10", "--data-root",
                                      "{data}", "--quiet"], "re-download"),
    # run: output folders
    ("run-results-dir-under-file", "file", [*RUN, "--results-dir", "{T}/afile/sub"], "not writable"),
    ("run-results-dir-name-too-long", "long", [*RUN, "--results-dir", "{long}"], "too long"),
    ("run-leaderboard-dir-file", "file", [*RUN, "--leaderboard-dir", "{T}/afile"], "is a file, not a folder"),
    # train
    ("train-not-trainable", None, ["train", "--defense", "clip", "--protocol", "micro"], "cannot be trained"),
    ("train-unknown-defense", None, ["train", "--defense", "tecoaa", "--protocol", "micro"], "Unknown defense"),
    ("train-no-data-root", None, ["train", "--defense", "tecoa", "--protocol", "tga16"], "--data-root"),
    ("train-bad-set", None, ["train", "--defense", "tecoa", "--protocol", "micro", "--set", "lr"], "KEY=VALUE"),
    ("train-unknown-hparam", None, ["train", "--defense", "tecoa", "--protocol", "micro", "--set", "foo=1"], "foo"),
    # table
    ("table-unknown-protocol", None, ["table", "--protocol", "tga17"], "Unknown protocol"),
    ("table-bad-eps", None, ["table", "--eps", "abc"], "--eps"),
    ("table-bad-metric", None, ["table", "--metric", "accuracy"], "--metric"),
    ("table-bad-as-of", None, ["table", "--as-of", "yesterday-ish"], "--as-of"),
    ("table-bad-version", None, ["table", "--protocol-version", "x"], "--protocol-version"),
    ("table-missing-leaderboard", None, ["table", "--leaderboard-dir", "{T}/nope"], "{T}/nope"),
    ("table-missing-results", None, ["table", "--results-dir", "{T}/nope"], "{T}/nope"),
    # show / history / compare
    ("show-unknown-entry", None, ["show", "no-such-entry"], "no-such-entry"),
    ("show-unknown-revision", None, ["show", "clip__zsr-tiny@r0099"], "has no revision 99"),
    ("history-unknown-entry", None, ["history", "no-such-entry"], "no-such-entry"),
    ("compare-unknown-entry", None, ["compare", "no-such-entry", "clip"], "no-such-entry"),
    # validate
    ("validate-missing-path", None, ["validate", "{T}/nope"], "{T}/nope"),
    # data check
    ("data-check-missing-root", None, ["data", "check", "--data-root", "{T}/nope"], "{T}/nope"),
    ("data-check-root-is-file", "roots", ["data", "check", "--data-root", "{T}/afile"], "not a folder"),
    ("data-check-unknown-dataset", "roots", ["data", "check", "--data-root", "{T}/empty", "--datasets", "cifar11"],
     "Unknown dataset"),
    ("data-check-empty-list", "roots", ["data", "check", "--data-root", "{T}/empty", "--datasets", ","],
     "names no dataset"),
    # audit
    ("audit-no-base-model", None, ["audit", "--protocol", "synthetic"], "no undefended base model"),
    ("audit-square-queries", None, ["audit", "--square-queries", "0"], "--square-queries"),
    ("audit-eot", None, ["audit", "--eot", "0"], "--eot"),
    ("audit-device", None, ["audit", "--device", "tpu"], "Unknown device"),
    ("audit-unknown-entry", None, ["audit", "--entry", "no-such-entry"], "no-such-entry"),
    ("audit-entry-and-protocol", None, ["audit", "--entry", "clip", "--protocol", "micro"], "drop --protocol"),
    ("audit-unknown-defense", None, ["audit", "--defense", "tecoaa"], "Unknown defense"),
]


def check_case(case, world: Path, tmp_path: Path, monkeypatch, setups=SETUPS, code: int = 2) -> None:
    """Run one bad-input case in a fresh copy of ``world``: exit ``code`` (2; ``validate`` reports with 1), a
    one-paragraph message containing the case's words, no traceback, results/ and leaderboards/ unchanged.

    A setup is called with the scratch folder (and ``monkeypatch`` when it takes two arguments; the current
    folder is then the world's copy, ``{W}``) and returns the values its argv names (``{key}``); ``{T}`` is the
    scratch folder. Other modules of the matrix
    (``tests/test_bad_inputs_*.py``) call this with their own cases and setups.
    """
    import inspect

    name, setup, argv, needle = case
    here = tmp_path / "world"
    shutil.copytree(world, here, symlinks=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(here)
    made = {}
    if setup:  # (a setup may plant a hostile file in the world: the command must then change nothing more)
        fn = setups[setup]
        made = fn(scratch, monkeypatch) if len(inspect.signature(fn).parameters) == 2 else fn(scratch)
    before = snapshot(here)
    values = {"T": str(scratch), "W": str(here), **made}
    args = [a.format(**values) for a in argv]
    res = runner.invoke(app, args)
    output = res.output
    assert res.exit_code == code, f"{name}: exit {res.exit_code}\n{output}\n{res.exception!r}"
    assert isinstance(res.exception, SystemExit), f"{name}: {res.exception!r}"
    assert "Traceback" not in output
    assert needle.format(**values) in " ".join(output.split()), f"{name}: wanted {needle!r} in\n{output}"
    assert snapshot(here) == before, f"{name}: results/ or leaderboards/ changed"
    assert not (scratch / "MARKER").exists(), f"{name}: an unpickled payload ran"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch)


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


# ------------------------------------------------------------------------------------------ broken images in a run
EUROSAT_RUN = ["run", "--protocol", "tga16", "--datasets", "eurosat", "--model", "zsr-tiny", "--attack", "pgd",
               "--steps", "1", "--quiet", "--no-leaderboard"]


def _eurosat_with_a_broken_image(root: Path) -> Path:
    from fake_layouts import make_eurosat

    make_eurosat(root)
    broken = sorted((root / "eurosat" / "2750").rglob("*.jpg"))[7]  # neither the first nor the last
    broken.write_bytes(b"\xff\xd8\xff\xe0 these bytes are not a JPEG")
    return broken


@pytest.mark.parametrize("jobs", ["1", "2"])  # in this process, and in a rank of two (the error crosses over)
def test_a_broken_image_mid_dataset_is_a_clear_error(tmp_path, jobs):
    broken = _eurosat_with_a_broken_image(tmp_path / "data")
    res = runner.invoke(app, [*EUROSAT_RUN, "--data-root", str(tmp_path / "data"), "--results-dir",
                              str(tmp_path / "results"), "--batch-size", "4", "--jobs", jobs])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert broken.name in text and "--skip-broken-images" in text
    assert not list((tmp_path).rglob("*.flags.npz"))  # nothing recorded


def test_skip_broken_images_leaves_it_out_and_records_it(tmp_path):
    from zsrbench.leaderboard.records import read_record

    broken = _eurosat_with_a_broken_image(tmp_path / "data")
    res = runner.invoke(app, [*EUROSAT_RUN, "--data-root", str(tmp_path / "data"), "--results-dir",
                              str(tmp_path / "results"), "--skip-broken-images"])
    assert res.exit_code == 0, res.output
    rec = read_record(next((tmp_path / "results").rglob("eurosat.json")))
    assert [Path(f).name for f in rec.protocol.skipped_files] == [broken.name]
    assert rec.protocol.n_total == 19 and any("do not decode" in n for n in rec.flags.notes)


def test_data_check_reports_a_tampered_pickle_without_running_it(tmp_path):
    values = malicious_cifar(tmp_path)
    res = runner.invoke(app, ["data", "check", "--data-root", values["data"], "--datasets", "cifar10"])
    assert res.exit_code == 1 and "Traceback" not in res.output  # a check that found an unusable dataset
    assert "re-download" in " ".join(res.output.split())
    assert not (tmp_path / "MARKER").exists()
