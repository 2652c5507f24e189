"""The one fine-tuning loop: loss goes down, outputs load back bit-identically, resume is exact, CLI is thin.

Offline, CPU, ``zsr-tiny`` on the ``synthetic`` protocol (48 images of 32 px, 3 classes).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from zsrbench.defenses.base import LoadSpec
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS, DEFENSES
from zsrbench.training import StopTraining, train_defense
from zsrbench.training.schedule import WarmupCosine, lr_at
from zsrbench.training.setup import precision_of
from zsrbench.training.batches import batches_per_epoch, epoch_order

TRAINED = ("tecoa", "pmg_aft", "fare", "tga_zsr", "comp_tga")
# learning rates large enough for a random-init tiny model to move in a few steps
FAST = {"tecoa": 1e-3, "pmg_aft": 1e-2, "fare": 3e-4, "tga_zsr": 1e-3, "comp_tga": 1e-3}


pytestmark = pytest.mark.usefixtures("one_training_thread")


def run(name, out, **kw):
    args = dict(protocol="synthetic", out_dir=out, steps=6, batch_size=16, seed=0, text_cache=False,
                hparams={"warmup_steps": 1, "lr": FAST[name]})
    args.update(kw)
    return train_defense(name, **args)


def load_state(path):
    from safetensors.torch import load_file

    return load_file(str(path))


# --- pieces ------------------------------------------------------------------------------------------------


def test_warmup_cosine_schedule():
    kw = dict(base_lr=1.0, warmup=4, total=12)
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **kw) == 1.0 and lr_at(8, **kw) == pytest.approx(0.5) and lr_at(12, **kw) == pytest.approx(0.0)
    assert lr_at(7, base_lr=2.0, warmup=0, total=10, schedule="constant") == 2.0
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=9.0)
    sched = WarmupCosine(opt, schedule="cosine", **kw)
    assert sched.set(1) == 0.5 and opt.param_groups[0]["lr"] == 0.5
    assert batches_per_epoch(48, 16, False) == 3 and batches_per_epoch(50, 16, True) == 3 and batches_per_epoch(50, 16, False) == 4
    assert torch.equal(epoch_order(10, 0, 1), epoch_order(10, 0, 1)) and not torch.equal(epoch_order(10, 0, 1), epoch_order(10, 0, 2))


def test_data_loader_leaves_global_rng_alone():
    from zsrbench.training.batches import epoch_loader

    order = epoch_order(10, 0, 0)
    before = torch.get_rng_state()
    batches = [ib.tolist() for _, _, ib in epoch_loader([(torch.zeros(1), 0)] * 10, order, 4, 1, 3, 0, False)]
    assert torch.equal(before, torch.get_rng_state())
    assert batches == [order[4:8].tolist(), order[8:].tolist()]  # resumes at the batch position


def test_precision_choice(monkeypatch):
    assert precision_of("amp", torch.device("cpu"))[0] == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision_of("amp", torch.device("cuda")) == ("amp-bf16", torch.bfloat16, False)
    assert precision_of("amp-fp16", torch.device("cuda")) == ("amp-fp16", torch.float16, True)
    assert precision_of("fp32", torch.device("cuda"))[0] == "fp32"


# --- training ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRAINED)
def test_training_lowers_the_loss(name, tmp_path):
    r = run(name, tmp_path / name, steps=8, batch_size=48)  # full batch: the same images every step
    losses = [e["loss"] for e in r.manifest["loss_curve"]]
    assert r.completed and len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert losses[-1] < losses[0], losses


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tga") / "out"
    return run("tga_zsr", out, steps=4), out


def test_outputs_load_back_bit_identically_and_evaluate(trained):
    from zsrbench.models.clip import build_clip
    from zsrbench.models.classifier import make_classifier
    from zsrbench.models.weights import sha256_file

    result, out = trained
    m = result.manifest
    assert {p.name for p in out.iterdir()} >= {"open_clip_config.json", "open_clip_model.safetensors", "manifest.json"}
    assert m["weights_sha256"] == sha256_file(out / "open_clip_model.safetensors")
    saved = load_state(out / "open_clip_model.safetensors")
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4
    # the full CLIP state dict: trained visual + the untouched original text tower
    torch.manual_seed(0)
    base = build_clip("zsr-tiny")
    for k, v in base.model.state_dict().items():
        if k.startswith("visual."):
            assert torch.equal(saved[k], ckpt["visual"][k.removeprefix("visual.")]), k
        else:
            assert torch.equal(saved[k], v), k
    assert any(not torch.equal(saved[k], v) for k, v in base.model.state_dict().items() if k.startswith("visual."))
    for parts in (build_clip(f"local-dir:{out}"),
                  DEFENSES.get("tga_zsr")().load(LoadSpec(model="zsr-tiny", checkpoint=str(out))),
                  DEFENSES.get("tga_zsr")().load(LoadSpec(model="zsr-tiny", checkpoint=f"local-dir:{out}"))):
        for k, v in parts.model.state_dict().items():
            assert torch.equal(v, saved[k]), k
        data = DATASETS.get("synthetic_shapes").build(None)
        clf, _ = make_classifier(parts, data.info.prompts(), cache=False)
        x = torch.stack([data.dataset[i][0] for i in range(4)])
        with torch.no_grad():
            logits = clf(x)
        assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert parts.source["trained_by_zsrbench"]["defense"] == "tga_zsr"


def test_manifest_records_everything(trained):
    result, out = trained
    m = json.loads((out / "manifest.json").read_text())
    assert m == json.loads(json.dumps(result.manifest, default=str))
    assert m["defense"] == "tga_zsr" and m["protocol"] == "synthetic" and m["train_dataset"] == "synthetic_shapes"
    assert m["completed"] and m["seed"] == 0 and m["steps"] == 4 and m["total_steps"] == 4 and m["batch_size"] == 16
    hp = m["hparams"]
    assert (hp["alpha"], hp["beta"], hp["attention_norm"], hp["distance"], hp["warmup_steps"]) == \
        (0.08, 0.05, "token_axis", "gram", 1)
    assert hp["attention_size"] == 224  # the official code's size, not the model's 32 px
    assert "attention_norm" in m["quirks"] and m["model_selection"].startswith("final")
    assert m["frozen_original_unchanged"] and m["base_model"]["visual_sha256"]
    assert m["precision"] == "fp32" and m["adversary"]["steps"] == 2
    assert m["train_set"]["prompt_examples"]["class"] == ["This is a photo of a circle"]
    assert {"python", "torch", "zsrbench"} <= set(m["versions"])
    assert [e["step"] for e in m["loss_curve"]] == [1, 2, 3, 4]
    assert {"loss", "lr", "ce", "attn_refine", "attn_constraint"} <= set(m["loss_curve"][0])
    cfg = json.loads((out / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["vision_cfg"]["patch_size"] == 8 and cfg["preprocess_cfg"]["size"] == 32


def test_finished_run_is_returned_not_retrained(trained):
    result, out = trained
    before = (out / "open_clip_model.safetensors").stat().st_mtime_ns
    again = run("tga_zsr", out, steps=4)
    assert again.completed and again.manifest["weights_sha256"] == result.manifest["weights_sha256"]
    assert (out / "open_clip_model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ZsrError, match="different training run"):
        (out / "manifest.json").rename(out / "manifest.bak")
        try:
            run("tga_zsr", out, steps=4, seed=1)
        finally:
            (out / "manifest.bak").rename(out / "manifest.json")


def _same_weights(a, b):
    sa, sb = load_state(a / "open_clip_model.safetensors"), load_state(b / "open_clip_model.safetensors")
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_resume_after_kill_between_epochs_is_exact(tmp_path):
    full = run("tga_zsr", tmp_path / "full")  # 6 steps = 2 epochs of 3 batches
    part = run("tga_zsr", tmp_path / "part", stop_after_epochs=1)
    assert not part.completed and part.manifest["steps"] == 3
    assert not (tmp_path / "part" / "open_clip_model.safetensors").exists()
    assert torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    done = run("tga_zsr", tmp_path / "part")
    assert done.completed and done.manifest["resumed_at_steps"] == [3]
    _same_weights(tmp_path / "full", tmp_path / "part")
    assert [e["loss"] for e in done.manifest["loss_curve"]] == [e["loss"] for e in full.manifest["loss_curve"]]


def test_resume_mid_epoch_with_momentum_adversary_is_exact(tmp_path):
    """FARE (AdamW, momentum-PGD): stop inside an epoch via a callback; resume restores data position and RNGs."""
    full = run("fare", tmp_path / "full", steps=5)

    def kill_at_4(info):
        if info["step"] == 4:
            raise StopTraining

    part = run("fare", tmp_path / "part", steps=5, callback=kill_at_4)
    assert not part.completed and part.manifest["steps"] == 4
    done = run("fare", tmp_path / "part", steps=5)
    assert done.completed and done.manifest["resumed_at_steps"] == [4]
    _same_weights(tmp_path / "full", tmp_path / "part")
    assert [e["loss"] for e in done.manifest["loss_curve"]] == [e["loss"] for e in full.manifest["loss_curve"]]


def test_no_resume_starts_over(tmp_path):
    run("tecoa", tmp_path / "o", steps=3, stop_after_steps=1)
    r = run("tecoa", tmp_path / "o", steps=3, resume=False)
    assert r.completed and r.manifest["resumed_at_steps"] == []


def test_budget_and_keyword_overrides(tmp_path):
    # FARE's default budget is 20k steps; asking for epochs replaces it (48 images / 16 = 3 steps per epoch)
    r = train_defense("fare", protocol="synthetic", out_dir=tmp_path / "f", epochs=1, batch_size=16, seed=0,
                      text_cache=False, warmup_steps=1, attack_steps="2", keep_checkpoints=False)
    assert r.manifest["total_steps"] == 3 and r.manifest["hparams"]["steps"] is None
    assert r.manifest["hparams"]["attack_steps"] == 2 and r.manifest["adversary"]["steps"] == 2
    assert not (tmp_path / "f" / "checkpoints" / "last.pt").exists()


def test_the_protocols_recipe_applies_under_the_callers_overrides(tmp_path):
    # synthetic's recipe: 2 steps of batch 16 at lr 1e-4 — used when the caller gives nothing else
    r = train_defense("tga_zsr", protocol="synthetic", out_dir=tmp_path / "t", seed=0, text_cache=False,
                      keep_checkpoints=False)
    hp = r.manifest["hparams"]
    assert (r.manifest["total_steps"], hp["batch_size"], hp["lr"]) == (2, 16, 1e-4)
    # the caller's values win; an epoch budget replaces the recipe's step budget
    r = train_defense("tecoa", protocol="synthetic", out_dir=tmp_path / "e", epochs=1, lr=3e-4, seed=0,
                      text_cache=False, keep_checkpoints=False)
    assert r.manifest["hparams"]["steps"] is None and r.manifest["total_steps"] == 3  # 48 images / 16
    assert r.manifest["hparams"]["lr"] == 3e-4


def test_train_on_tinyimagenet_layout_with_the_crop_pipeline(tmp_path):
    """tga16's source task read from a fake on-disk Tiny-ImageNet (train split), Resize(256/224·S)+CenterCrop(S)."""
    from PIL import Image

    from fake_layouts import make_tinyimagenet
    from zsrbench.training.batches import train_transform

    im = Image.new("RGB", (64, 64), (255, 0, 0))
    im.paste((0, 0, 255), (4, 4, 60, 60))  # a red frame: the 256/224 centre crop cuts most of it, resize-crop none
    cropped, whole = train_transform("resize256-crop", 32)(im), train_transform("resize-crop", 32)(im)
    assert cropped.shape == whole.shape == (3, 32, 32)
    assert cropped[0].mean() < 0.5 * whole[0].mean() and whole[0, 0, 0] > 0.9
    assert train_transform("dataset", 32) is None
    make_tinyimagenet(tmp_path / "data")
    r = train_defense("tecoa", protocol="tga16", model="zsr-tiny", data_root=tmp_path / "data", out_dir=tmp_path / "o",
                      steps=2, batch_size=8, seed=0, text_cache=False, warmup_steps=1)
    assert r.completed and r.manifest["train_set"]["n"] == 200 and r.manifest["train_set"]["classes"] == 200
    assert r.manifest["hparams"]["train_input"] == "resize256-crop"


def test_user_errors_are_zsr_errors(tmp_path):
    with pytest.raises(ZsrError, match="cannot be trained"):
        train_defense("clip", protocol="synthetic", out_dir=tmp_path)
    with pytest.raises(ZsrError, match="no hyper-parameter"):
        run("tecoa", tmp_path, hparams={"alpha": 1.0})
    from zsrbench.protocols import Protocol

    no_source = Protocol(name="eval-only", version=1, description="", datasets=("synthetic_shapes",),
                         default_model="zsr-tiny", default_pretrained=None)
    with pytest.raises(ZsrError, match="names no training set"):
        train_defense("tecoa", protocol=no_source, out_dir=tmp_path)
    with pytest.raises(ZsrError, match="Unknown defense"):
        train_defense("tga-zrs", protocol="synthetic", out_dir=tmp_path)


# --- the CLI -----------------------------------------------------------------------------------------------


@pytest.fixture()
def app():
    import typer

    from zsrbench.cli.train import train

    a = typer.Typer()
    a.command("train")(train)
    a.command("noop")(lambda: None)  # two commands: typer keeps the "train" sub-command name
    return a


def test_cli_trains_and_maps_errors_to_exit_2(app, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--defense", "comp_tga", "--protocol", "synthetic", "--steps", "2",
                              "--batch-size", "16", "--out", str(tmp_path / "c"), "--device", "cpu",
                              "--set", "warmup_steps=1", "--set", "attention_norm=per_token"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["hparams"]["attention_norm"] == "per_token" and m["hparams"]["warmup_steps"] == 1 and m["steps"] == 2
    for args, text in ((["--defense", "nope"], "Unknown defense"),
                       (["--defense", "tecoa", "--set", "lr"], "KEY=VALUE"),
                       (["--defense", "tecoa", "--set", "warmup_steps=many"], "warmup_steps")):
        res = runner.invoke(app, ["train", "--protocol", "synthetic", "--out", str(tmp_path / "e"), *args])
        assert res.exit_code == 2, res.output
        assert text in res.output and "Traceback" not in res.output


def test_reseed_training_attack_reaches_the_loop(tmp_path):
    """Comp-TGA's official-code quirk: with reseed_training_attack the adversary is re-seeded with the run's
    seed before every attack (recorded); the default draws a fresh start every step."""
    quirk = run("comp_tga", tmp_path / "q", steps=2, reseed_training_attack="true")
    plain = run("comp_tga", tmp_path / "p", steps=2)
    assert quirk.manifest["hparams"]["reseed_training_attack"] is True
    assert quirk.manifest["adversary"]["reseed"] == 0 + 7919  # the loop seeds its adversary with seed + 7919
    assert plain.manifest["hparams"]["reseed_training_attack"] is False
    assert plain.manifest["adversary"]["reseed"] is None
    assert quirk.manifest["hparams"]["attention_size"] == 224
