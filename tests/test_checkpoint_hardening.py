"""Damaged, unsafe or nonsensical model files and training settings are user errors: exit 2, no traceback.

Every case runs the real CLI (``zsrbench run`` / ``zsrbench train``) on tiny inputs (``zsr-tiny``, the
``synthetic`` protocol) and checks that the message says what to do and that nothing was written.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.errors import ZsrError
from zsrbench.models.clip import _open_clip, build_clip
from zsrbench.models.weights import check_sha256_text, sha256_file

cli = CliRunner()
RUN = ["run", "--defense", "clip", "--protocol", "synthetic", "--attack", "pgd", "--steps", "1", "--quiet"]
TRAIN = ["train", "--defense", "tecoa", "--protocol", "synthetic", "--device", "cpu", "--steps", "1"]


def snapshot(*folders: Path) -> dict[str, bytes | None]:
    """Every folder and file under ``folders`` (files with their bytes)."""
    out: dict[str, bytes | None] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")) if folder.exists() else []:
            out[str(p)] = p.read_bytes() if p.is_file() else None
        out[str(folder)] = b"exists" if folder.exists() else None
    return out


@pytest.fixture()
def dirs(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    for d in (results, board):
        d.mkdir()
        (d / "keep.txt").write_text("untouched")
    return results, board


def refused(args, *expected: str, folders=()):
    """Invoke the CLI; it must exit 2 without a traceback, name ``expected`` and leave ``folders`` alone."""
    before = snapshot(*folders)
    res = cli.invoke(app, [str(a) for a in args])
    text = " ".join(res.output.split())  # the console wraps long lines
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in text, res.output
    for part in expected:
        assert part in text, res.output
    assert snapshot(*folders) == before
    return text


def run_refused(dirs, extra, *expected):
    results, board = dirs
    args = [*RUN, "--results-dir", results, "--leaderboard-dir", board, *extra]
    return refused(args, *expected, folders=(results, board))


@pytest.fixture(scope="module")
def visual_state():
    torch.manual_seed(0)
    return {k: v.clone() for k, v in build_clip("zsr-tiny").visual.state_dict().items()}


@pytest.fixture(scope="module")
def full_state():
    torch.manual_seed(0)
    return {k: v.clone().contiguous() for k, v in build_clip("zsr-tiny").model.state_dict().items()}


def model_folder(path: Path, state: dict | None = None, weights: str = "open_clip_model.safetensors") -> Path:
    """An open_clip local-dir folder for zsr-tiny (config + weights)."""
    path.mkdir(parents=True)
    cfg = {"model_cfg": _open_clip().get_model_config("zsr-tiny")}
    (path / "open_clip_config.json").write_text(json.dumps(cfg))
    if state is not None:
        save_file(state, str(path / weights))
    return path


class MakesADirectory:
    """Unpickling it (only a full, trusted load would) creates a folder: proof that nothing was unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


# --- the sha256 text ---------------------------------------------------------------------------------------


def test_check_sha256_text_normalises_and_rejects_bad_formats():
    digest = "ab" * 32
    assert check_sha256_text(digest.upper()) == digest
    assert check_sha256_text(f"  sha256:{digest}\n") == digest
    for bad in ("", "xyz", "ab" * 31, "ab" * 33, "g" * 64, "sha256:", digest[:-1] + " "):
        with pytest.raises(ZsrError, match="64 hexadecimal characters"):
            check_sha256_text(bad)


def test_malformed_sha256_is_a_format_error_not_a_mismatch(dirs, tmp_path, visual_state):
    ck = tmp_path / "ok.pt"
    torch.save(visual_state, ck)
    text = run_refused(dirs, ["--checkpoint", ck, "--checkpoint-sha256", "not-a-digest"], "64 hexadecimal")
    assert "expected" not in text.split("64 hexadecimal")[0]  # not reported as "X was expected"
    wrong = "0" * 64
    run_refused(dirs, ["--checkpoint", ck, "--checkpoint-sha256", wrong], "was expected", "Download it again")


def test_malformed_sha256_for_a_folder_is_a_format_error(tmp_path, full_state):
    from zsrbench.defenses.loading import _load_folder

    folder = model_folder(tmp_path / "m", full_state)
    with pytest.raises(ZsrError, match="64 hexadecimal"):
        _load_folder(folder, device="cpu", expected="1234")
    assert _load_folder(folder, device="cpu", expected=sha256_file(folder / "open_clip_model.safetensors"))


# --- damaged files -----------------------------------------------------------------------------------------


def test_garbage_safetensors_checkpoint(dirs, tmp_path):
    ck = tmp_path / "garbage.safetensors"
    ck.write_bytes(os.urandom(4096))
    run_refused(dirs, ["--checkpoint", ck], str(ck), "corrupt", "Download or copy it again")


def test_truncated_safetensors_checkpoint(dirs, tmp_path, visual_state):
    ck = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in visual_state.items()}, str(ck))
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    run_refused(dirs, ["--checkpoint", ck], str(ck), "truncated", "Download or copy it again")


@pytest.mark.parametrize("cut", ["empty", "half", "garbage"])
def test_damaged_torch_checkpoint(dirs, tmp_path, visual_state, cut):
    ck = tmp_path / "damaged.pt"
    torch.save(visual_state, ck)
    data = {"empty": b"", "half": ck.read_bytes()[:2000], "garbage": os.urandom(3000)}[cut]
    ck.write_bytes(data)
    run_refused(dirs, ["--checkpoint", ck], str(ck), "Cannot read", "Download or copy it again")


def test_truncated_safetensors_in_a_trained_folder(dirs, tmp_path, full_state):
    folder = model_folder(tmp_path / "m", full_state)
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    run_refused(dirs, ["--checkpoint", folder], str(weights), "truncated")
    run_refused(dirs, ["--model", f"local-dir:{folder}"], str(weights), "truncated")


def test_folder_without_config_or_weights(dirs, tmp_path, full_state):
    bare = tmp_path / "bare"
    bare.mkdir()
    save_file(full_state, str(bare / "open_clip_model.safetensors"))
    (bare / "manifest.json").write_text("{}")
    run_refused(dirs, ["--checkpoint", bare], "no open_clip_config.json", "zsrbench train")
    run_refused(dirs, ["--model", f"local-dir:{bare}"], "no open_clip_config.json")
    no_weights = model_folder(tmp_path / "config-only")
    run_refused(dirs, ["--checkpoint", no_weights], "no weights file", "Copy the weights")
    broken = model_folder(tmp_path / "broken", full_state)
    (broken / "open_clip_config.json").write_text("{not json")
    run_refused(dirs, ["--checkpoint", broken], "not readable JSON", "re-run `zsrbench train`")


def test_manifest_naming_a_missing_weights_file(dirs, tmp_path, full_state):
    folder = model_folder(tmp_path / "m", full_state)
    (folder / "manifest.json").write_text(json.dumps({"weights_file": "gone.safetensors", "weights_sha256": "0" * 64}))
    run_refused(dirs, ["--checkpoint", folder], "gone.safetensors", "missing", "re-run `zsrbench train`")


def test_bin_pickle_inside_a_folder(dirs, tmp_path, full_state):
    marker = tmp_path / "unpickled"
    folder = model_folder(tmp_path / "objects")
    torch.save({"state_dict": full_state, "args": MakesADirectory(marker)}, folder / "open_clip_pytorch_model.bin")
    run_refused(dirs, ["--checkpoint", folder], "open_clip_pytorch_model.bin", "pickled Python objects",
                "re-save only the state dict")
    assert not marker.exists()
    garbage = model_folder(tmp_path / "garbage")
    (garbage / "open_clip_pytorch_model.bin").write_bytes(os.urandom(2048))
    run_refused(dirs, ["--checkpoint", garbage], "open_clip_pytorch_model.bin", "Download or copy it again")


def test_pickle_given_as_pretrained(dirs, tmp_path, full_state):
    marker = tmp_path / "unpickled"
    objects = tmp_path / "objects.pt"
    torch.save({"weights": full_state, "args": MakesADirectory(marker)}, objects)
    run_refused(dirs, ["--model", "zsr-tiny", "--pretrained", objects], str(objects), "pickled Python objects")
    assert not marker.exists()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(1000))
    run_refused(dirs, ["--model", "zsr-tiny", "--pretrained", garbage], str(garbage), "Download or copy it again")
    no_tensors = tmp_path / "numbers.pt"
    torch.save({"epoch": 3}, no_tensors)
    run_refused(dirs, ["--model", "zsr-tiny", "--pretrained", no_tensors], "no state dict of tensors")
    run_refused(dirs, ["--model", "zsr-tiny", "--pretrained", "no-such-tag"], "neither a pretrained tag",
                "or the path of a file")


def test_pretrained_weights_of_another_architecture(dirs, tmp_path, full_state):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3), **{k: v for k, v in full_state.items() if k != "visual.proj"}},
              str(wrong))
    run_refused(dirs, ["--model", "zsr-tiny", "--pretrained", wrong], "Could not build zsr-tiny", "--model names")


# --- unsafe pickles ----------------------------------------------------------------------------------------


def test_pickled_objects_are_refused_without_trust(dirs, tmp_path, visual_state):
    marker = tmp_path / "unpickled"
    ck = tmp_path / "objects.pt"
    torch.save({"vision_encoder_state_dict": visual_state, "args": MakesADirectory(marker)}, ck)
    run_refused(dirs, ["--checkpoint", ck], "pickled Python objects", "--trust-checkpoint", "weights_only=True")
    assert not marker.exists()  # refused before anything was unpickled


def _call_arguments(source: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its match."""
    depth = 0
    for i in range(start, len(source)):
        depth += {"(": 1, ")": -1}.get(source[i], 0)
        if depth == 0:
            return source[start + 1:i]
    return source[start + 1:]


def test_every_torch_load_in_zsrbench_is_weights_only():
    root = Path(__file__).resolve().parents[1] / "zsrbench"
    calls = 0
    for path in root.rglob("*.py"):
        source = path.read_text()
        at = source.find("torch.load(")
        while at >= 0:
            args = _call_arguments(source, at + len("torch.load"))
            assert "weights_only=" in args and "weights_only=False" not in args, f"{path}: torch.load({args})"
            calls += 1
            at = source.find("torch.load(", at + 1)
    assert calls >= 3  # models (checkpoints, text heads) and train (resume)


# --- wrong keys, shapes, values ----------------------------------------------------------------------------


def test_state_dict_with_wrong_keys_or_shapes(dirs, tmp_path, visual_state):
    keys = dict(visual_state)
    keys.pop("proj")
    keys["extra.weight"] = torch.zeros(2)
    torch.save(keys, tmp_path / "keys.pt")
    run_refused(dirs, ["--checkpoint", tmp_path / "keys.pt"], "missing keys: proj", "unexpected keys: extra.weight",
                "Check --model")
    shapes = dict(visual_state, proj=torch.zeros(3, 3))
    torch.save(shapes, tmp_path / "shapes.pt")
    run_refused(dirs, ["--checkpoint", tmp_path / "shapes.pt"], "shape mismatch: proj", "Check --model")
    torch.save({"epoch": 1}, tmp_path / "none.pt")
    run_refused(dirs, ["--checkpoint", tmp_path / "none.pt"], "no state dict of tensors")


def test_nonfinite_visual_checkpoint(dirs, tmp_path, visual_state):
    state = {k: v.clone() for k, v in visual_state.items()}
    state["proj"][0, 0] = float("nan")
    state["conv1.weight"].fill_(float("inf"))
    torch.save(state, tmp_path / "nan.pt")
    run_refused(dirs, ["--checkpoint", tmp_path / "nan.pt"], str(tmp_path / "nan.pt"), f"2 of {len(state)} tensors",
                "NaN or inf", "re-train")


def test_nonfinite_weights_in_a_folder(dirs, tmp_path, full_state):
    state = {k: v.clone() for k, v in full_state.items()}
    state["visual.proj"][1, 1] = float("-inf")
    folder = model_folder(tmp_path / "inf", state)
    text = run_refused(dirs, ["--checkpoint", folder], "1 of", "NaN or inf", "download/copy the checkpoint again")
    assert str(folder) in text


# --- training ----------------------------------------------------------------------------------------------


@pytest.fixture()
def no_model(monkeypatch):
    """Training validation happens before any model is built."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built before the training settings were validated")

    monkeypatch.setattr("zsrbench.models.clip.build_clip", forbidden)


@pytest.mark.parametrize("args, text", [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "-1e-3"], "lr must be > 0"),
    (["--lr", "0"], "lr must be > 0"),
    (["--steps", "0"], "steps must be an integer >= 1"),
    (["--epochs", "-2", "--steps", "3"], "epochs must be an integer >= 1"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["--eps", "nan"], "eps must be a finite number"),
    (["--eps", "-1"], "eps must be in [0, 255]"),
    (["--set", "momentum=nan"], "momentum must be a finite number"),
    (["--set", "momentum=1.5"], "momentum must be in [0, 1)"),
    (["--set", "weight_decay=-1"], "weight_decay must be >= 0"),
    (["--set", "attack_step=inf"], "attack_step must be a finite number"),
    (["--set", "attack_step=0"], "attack_step > 0"),
    (["--set", "warmup_steps=-1"], "warmup_steps must be an integer >= 0"),
    (["--set", "adam_betas=0.9,nan"], "adam_betas must be a finite number"),
    (["--set", "train_logit_scale=0"], "train_logit_scale must be > 0"),
    (["--num-workers", "-1"], "--num-workers must be an integer >= 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1"),
])
def test_training_settings_out_of_range(tmp_path, no_model, args, text):
    out = tmp_path / "out"
    msg = refused([*TRAIN, "--out", out, *args], text, "Pass a valid value" if "must be" in text else "",
                  folders=(tmp_path,))
    assert "--" in msg  # names the option to pass
    assert not out.exists()


def test_nan_in_a_defense_specific_hyper_parameter(tmp_path, no_model):
    refused(["train", "--defense", "tga_zsr", "--protocol", "synthetic", "--out", tmp_path / "o",
             "--set", "alpha=nan"], "alpha must be a finite number", folders=(tmp_path,))


def test_training_data_root_is_checked_before_building(tmp_path, no_model):
    base = ["train", "--defense", "tecoa", "--protocol", "tga16", "--out", tmp_path / "o"]
    refused(base, "pass --data-root DIR", folders=(tmp_path,))
    refused([*base, "--data-root", tmp_path / "nope"], "not an existing folder", "Pass --data-root",
            folders=(tmp_path,))


def test_train_out_is_an_existing_file(tmp_path, no_model):
    target = tmp_path / "weights.txt"
    target.write_text("not a folder")
    refused([*TRAIN, "--out", target], "is an existing file, not a folder", "Pass a folder", folders=(tmp_path,))
    refused([*TRAIN, "--out", target / "sub"], "not a folder", "--out another folder", folders=(tmp_path,))


def test_train_out_name_too_long(tmp_path, no_model):
    refused([*TRAIN, "--out", tmp_path / ("x" * 300) / "run"], "longer than the filesystem allows",
            "use shorter folder names", folders=(tmp_path,))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_train_out_not_writable(tmp_path, no_model):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused([*TRAIN, "--out", locked / "run"], "permission denied", "pick a folder you can write to",
                folders=(tmp_path,))
    finally:
        locked.chmod(0o700)


def test_train_out_not_writable_as_checked(tmp_path, no_model, monkeypatch):
    """The permission check itself (root passes os.access everywhere but a read-only mount)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real(p, mode, **kw))
    refused([*TRAIN, "--out", tmp_path / "run"], "permission denied", "pick a folder you can write to",
            folders=(tmp_path,))


def test_disk_full_while_writing_leaves_no_partial_output(tmp_path, monkeypatch):
    attempts: list[Path] = []

    def full(obj, f, *args, **kwargs):
        attempts.append(Path(f))
        Path(f).write_bytes(b"partial")  # a half-written file, as a full disk leaves it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "new" / "run"
    refused([*TRAIN, "--out", out, "--batch-size", "16", "--set", "warmup_steps=1"], "no space left",
            "free disk space", folders=(tmp_path,))
    assert any(out in p.parents for p in attempts)  # the training checkpoint was being written …
    assert not (tmp_path / "new").exists()  # … and the folders this run created are gone


def test_disk_full_in_an_existing_folder_keeps_it_and_leaves_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "notes.txt").write_text("an earlier run's")

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", full)
    refused([*TRAIN, "--out", out, "--batch-size", "16", "--set", "warmup_steps=1"], "no space left",
            folders=(tmp_path,))


def test_disk_full_after_a_checkpoint_keeps_it_for_resuming(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = torch.save
    saves: list[Path] = []

    def full_after_the_first(obj, f, *args, **kwargs):
        if out not in Path(f).parents:  # the text-head cache
            return real_save(obj, f, *args, **kwargs)
        saves.append(Path(f))
        if len(saves) == 1:
            return real_save(obj, f, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", full_after_the_first)
    args = ["train", "--defense", "tecoa", "--protocol", "synthetic", "--device", "cpu", "--steps", "2",
            "--checkpoint-every", "1", "--batch-size", "16", "--set", "warmup_steps=1", "--out", out]
    res = cli.invoke(app, [str(a) for a in args])
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "no space left" in text and "run the same command again to resume" in text
    assert (out / "checkpoints" / "last.pt").is_file()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.setattr(torch, "save", real_save)
    assert cli.invoke(app, [str(a) for a in args]).exit_code == 0  # resumes and finishes
    assert (out / "manifest.json").is_file()
