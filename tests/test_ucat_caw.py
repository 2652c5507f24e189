"""UCAT (spec §9) and CAW (spec §10): the losses against hand-written formulas, gradients, registration, training.

Offline, CPU: pure functions on fixed random tensors, the random-init ``zsr-tiny`` CLIP for the defenses'
losses, and a few steps of ``zsrbench train`` on the ``micro`` protocol.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln

from zsrbench.defenses.base import Adversary, LossOutput, TrainBatch, TrainHparams
from zsrbench.defenses.caw import caw_loss
from zsrbench.defenses.ucat import dirichlet_kl, ucat_alpha, ucat_lambda, ucat_loss
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS, DEFENSES

NEW = ("ucat", "caw")


pytestmark = pytest.mark.usefixtures("one_training_thread")


# --- the Dirichlet KL ------------------------------------------------------------------------------------------


def kl_by_definition(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KL(Dir(a) ‖ Dir(b)) per row, float64, straight from the definition."""
    a0, b0 = a.sum(1), b.sum(1)
    return (gammaln(a0) - gammaln(a).sum(1) - gammaln(b0) + gammaln(b).sum(1)
            + ((a - b) * (digamma(a) - digamma(a0)[:, None])).sum(1))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 50.0, 1e4, 1e8])
def test_dirichlet_kl_equals_the_definition(scale):
    g = torch.Generator().manual_seed(int(math.log10(scale) + 10))
    a = scale * (0.2 + torch.rand(6, 7, generator=g, dtype=torch.float64))
    b = scale * (0.2 + torch.rand(6, 7, generator=g, dtype=torch.float64))
    got = dirichlet_kl(a, b)
    ref = torch.from_numpy(kl_by_definition(a.numpy(), b.numpy()))
    assert got.dtype == torch.float64 and got.shape == (6,)
    # the terms are ~C·scale·log(scale) large: compare within float64 rounding of their size
    size = float(gammaln(a.sum(1).numpy()).max()) + 1.0
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12 * size), (got, ref)
    assert (got > 0).all()  # distinct distributions
    assert torch.equal(dirichlet_kl(a, a), torch.zeros(6, dtype=torch.float64))  # exactly 0, also at α ~ 1e8


def test_dirichlet_kl_is_float64_and_nonnegative_for_any_input_dtype():
    g = torch.Generator().manual_seed(0)
    cos = 2 * torch.rand(64, 10, generator=g) - 1
    cos2 = (cos + 0.05 * torch.randn(64, 10, generator=g)).clamp(-1, 1)
    a, b = ucat_alpha(cos, 0.07), ucat_alpha(cos2, 0.07)
    assert a.max() > 1e10  # the concentrations reach float16's overflow many times over
    kl = dirichlet_kl(a, b)
    ref = torch.from_numpy(kl_by_definition(a.numpy(), b.numpy()))
    assert kl.dtype == torch.float64 and torch.isfinite(kl).all() and (kl >= 0).all()
    assert torch.allclose(kl, ref, rtol=1e-8)
    # float32 / float16 concentrations are upcast before anything is computed (never an inf from float16)
    small = 1 + 10 * torch.rand(4, 5, generator=g)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        lo = small.to(dtype)
        out = dirichlet_kl(lo, lo.flip(0))
        assert out.dtype == torch.float64
        assert torch.allclose(out, torch.from_numpy(kl_by_definition(lo.double().numpy(), lo.flip(0).double().numpy())))


def test_ucat_alpha_and_lambda():
    cos = torch.tensor([[-1.0, 0.0, 0.3, 1.0]], dtype=torch.float64)
    want = [1e-6 + math.exp((c + 1) / 0.07) for c in (-1.0, 0.0, 0.3, 1.0)]
    assert ucat_alpha(cos, 0.07).tolist()[0] == pytest.approx(want, rel=1e-12)
    lam = ucat_lambda(1e5, 0.07)
    assert lam == pytest.approx(3.905e-8, rel=1e-3)
    assert lam == pytest.approx(1e5 / math.exp(math.log1p(math.exp(2 / 0.07))), rel=1e-12)
    assert ucat_lambda(1.0, 1e-4) == 0.0  # 2/τ = 20000: underflows to 0, no OverflowError


# --- the losses on fixed random tensors ---------------------------------------------------------------------


def _random(seed=0, b=5, c=4, d=6):
    g = torch.Generator().manual_seed(seed)
    cos_adv = (0.6 * torch.rand(b, c, generator=g) - 0.1).requires_grad_(True)
    cos_ori = 0.6 * torch.rand(b, c, generator=g) - 0.1
    y = torch.randint(0, c, (b,), generator=g)
    feats = torch.randn(b, d, generator=g, requires_grad=True), torch.randn(b, d, generator=g)
    return cos_adv, cos_ori, y, feats


def _log_softmax_row(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def test_ucat_loss_by_hand():
    cos_adv, cos_ori, y, _ = _random()
    total, terms = ucat_loss(cos_adv, cos_ori, y, logit_scale=100.0, t=1e5, tau=0.07)
    ce = -sum(_log_softmax_row([100 * v for v in row])[k] for row, k in zip(cos_adv.tolist(), y.tolist())) / len(y)
    def alpha(c):
        return 1e-6 + np.exp((np.asarray(c, dtype=np.float64) + 1) / 0.07)

    kl = kl_by_definition(alpha(cos_adv.tolist()), alpha(cos_ori.tolist())).mean()
    lam = 1e5 / math.exp(math.log1p(math.exp(2 / 0.07)))
    assert terms["ce"] == pytest.approx(ce, rel=1e-5) and terms["dirichlet_kl"] == pytest.approx(kl, rel=1e-6)
    assert total.item() == pytest.approx(ce + lam * kl, rel=1e-5)
    assert total.dtype == torch.float32
    # the clean reference carries no gradient, the adversarial cosines do (through CE and the KL)
    ori = cos_ori.clone().requires_grad_(True)
    total, _ = ucat_loss(cos_adv, ori, y)
    total.backward()
    assert ori.grad is None and cos_adv.grad is not None and cos_adv.grad.abs().sum() > 0
    # t = 0 leaves TeCoA's CE
    assert ucat_loss(cos_adv, cos_ori, y, t=0.0)[0].item() == pytest.approx(ce, rel=1e-5)


def test_caw_loss_by_hand():
    logits_adv = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    logits_clean = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 2])
    f_adv = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], requires_grad=True)
    f_0 = torch.tensor([[1.0, 0.0], [3.0, 4.0], [3.0, -1.0]])
    total, terms = caw_loss(logits_adv, logits_clean, y, f_adv, f_0, alpha=0.7, beta=0.3)
    ce = ca = 0.0
    for row, ref, k in zip(logits_adv.tolist(), logits_clean.tolist(), y.tolist()):
        lp, lq = _log_softmax_row(row), _log_softmax_row(ref)
        ce -= lp[k] / 3
        kl = sum(math.exp(a) * (a - b) for a, b in zip(lp, lq))
        ca += (1 - math.exp(lp[k])) * kl / 3
    reg = (2.0 + 5.0 + 0.0) / 3  # plain L2 per row: ‖(0,2)‖, ‖(−3,−4)‖, 0
    assert terms["ce"] == pytest.approx(ce, rel=1e-6)
    assert terms["confidence_kl"] == pytest.approx(ca, rel=1e-6)
    assert terms["feature_l2"] == pytest.approx(reg, rel=1e-6)
    assert total.item() == pytest.approx(ce + 0.7 * ca + 0.3 * reg, rel=1e-6)
    total.backward()
    assert torch.isfinite(f_adv.grad).all() and torch.equal(f_adv.grad[2], torch.zeros(2))  # 0 (not NaN) at d = 0


def test_caw_detach_weight_changes_the_gradient_not_the_value():
    _, _, y, (f, f0) = _random(seed=3)
    g = torch.Generator().manual_seed(4)
    logits = 3 * torch.randn(5, 4, generator=g)
    clean = 3 * torch.randn(5, 4, generator=g)
    out = {}
    for detach in (False, True):
        z = logits.clone().requires_grad_(True)
        total, _ = caw_loss(z, clean, y, f, f0, alpha=2.0, beta=0.5, detach_weight=detach)
        (grad,) = torch.autograd.grad(total, z)
        out[detach] = (total.item(), grad)
    assert out[False][0] == out[True][0]
    assert not torch.allclose(out[False][1], out[True][1])
    # the frozen inputs never receive gradient
    clean_g, f0_g = clean.clone().requires_grad_(True), f0.clone().requires_grad_(True)
    total, _ = caw_loss(logits.clone().requires_grad_(True), clean_g, y, f, f0_g)
    total.backward()
    assert clean_g.grad is None and f0_g.grad is None


# --- registration and hyper-parameters ---------------------------------------------------------------------


def test_registered_with_the_tga_recipe_and_documented_choices():
    for name in NEW:
        cls = DEFENSES.get(name)
        assert cls.name == name and cls.trainable and cls.paper and cls.description and cls.notes
        hp = cls.default_hparams
        assert dataclasses.is_dataclass(hp) and isinstance(hp, TrainHparams)
        hp.validate()
        assert (hp.eps, hp.attack_step, hp.attack_steps, hp.attack_momentum) == (1.0, 1.0, 2, 0.0)
        assert (hp.optimizer, hp.lr, hp.momentum, hp.weight_decay) == ("sgd", 1e-4, 0.9, 0.0)
        assert (hp.warmup_steps, hp.schedule, hp.epochs) == (1000, "cosine", 10)
        assert hp.template == "This is a photo of a {}" and hp.train_logit_scale == 100.0
    ucat, caw = DEFENSES.get("ucat"), DEFENSES.get("caw")
    assert (ucat.default_hparams.batch_size, ucat.default_hparams.t, ucat.default_hparams.tau) == (256, 1e5, 0.07)
    assert "APGD-CE + APGD-DLR" in " ".join(ucat.notes) and "checkpoints" in " ".join(ucat.notes)
    assert "cannot run as published" in " ".join(ucat.notes)
    hp = caw.default_hparams
    assert (hp.batch_size, hp.alpha, hp.beta, hp.detach_weight, hp.features) == (128, 1.0, 1.0, False, "unnormalised")
    assert "zsrbench's choice" in caw.quirks["alpha"] and "zsrbench's choice" in caw.quirks["beta"]
    assert "zsrbench's choice" in (caw.__doc__ or "") + (type(hp).__doc__ or "")
    assert "APGD-CE + APGD-DLR" in " ".join(caw.notes) and "ImageNet" in " ".join(caw.notes)
    # the manifest's record of the training carries the choices
    desc = caw().describe_training()
    assert desc["hparams"]["alpha"] == 1.0 and "zsrbench's choice" in desc["quirks"]["beta"]


def test_hparam_errors():
    with pytest.raises(ZsrError, match="tau"):
        DEFENSES.get("ucat")(tau=0.0).hp.validate()
    with pytest.raises(ZsrError, match="features"):
        DEFENSES.get("caw")(features="pooled").hp.validate()
    with pytest.raises(ZsrError, match="alpha"):
        DEFENSES.get("caw")(alpha=-1.0).hp.validate()
    with pytest.raises(ZsrError, match="no hyper-parameter gamma"):
        DEFENSES.get("caw")(gamma=1.0)


# --- the defenses on the tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_parts):
    from zsrbench.models.classifier import text_head

    data = DATASETS.get("synthetic_shapes").build(None)
    x = torch.stack([data.dataset[i][0] for i in range(6)])
    y = torch.tensor([data.dataset[i][1] for i in range(6)])
    head = text_head(tiny_parts, [[f"This is a photo of a {c}"] for c in data.info.classnames], cache=False)[0]
    return tiny_parts, x, y, head


def _setup(name, tiny, **overrides):
    from zsrbench.models.classifier import ZeroShotClassifier

    parts, x, y, head = tiny
    d = DEFENSES.get(name)(**overrides)
    model = ZeroShotClassifier(copy.deepcopy(parts.visual), head, image_size=parts.image_size)
    frozen = ZeroShotClassifier(copy.deepcopy(parts.visual).requires_grad_(False), head, image_size=parts.image_size)
    return d, model, frozen, TrainBatch(x=x, y=y, texts={"class": head})


def _adversary(**kw):
    return Adversary(eps=1 / 255, step=1 / 255, steps=2, generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("name", NEW)
def test_gradient_reaches_only_the_fine_tuned_encoder(name, tiny):
    d, model, frozen, batch = _setup(name, tiny)
    frozen_before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model_before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    opt = torch.optim.SGD(model.visual.parameters(), lr=1e-2)
    model.train()
    out = d.loss(batch, model, frozen, _adversary())
    assert isinstance(out, LossOutput) and out.total.dim() == 0 and torch.isfinite(out.total)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.terms.values())
    opt.zero_grad()
    out.total.backward()
    grads = [p.grad for p in model.visual.parameters()]
    assert sum(g is not None and bool(torch.isfinite(g).all()) and g.abs().sum().item() > 0 for g in grads) >= len(grads) - 2
    assert all(p.grad is None for p in frozen.parameters())
    opt.step()
    assert all(torch.equal(v, frozen_before[k]) for k, v in frozen.state_dict().items())
    assert any(not torch.equal(v, model_before[k]) for k, v in model.visual.state_dict().items())


@pytest.mark.parametrize("name", NEW)
def test_loss_under_autocast(name, tiny):
    """The loop runs losses under autocast on CUDA; CPU bf16 autocast exercises the same code path."""
    d, model, frozen, batch = _setup(name, tiny)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d.loss(batch, model, frozen, _adversary())
    assert out.total.dtype == torch.float32 and torch.isfinite(out.total)
    out.total.backward()
    assert all(p.grad is None for p in frozen.parameters())


def test_methods_match_the_pure_functions(tiny):
    from zsrbench.defenses.base import embed

    # UCAT with x' = x at θ = θ0: the Dirichlet KL is exactly 0, the loss is TeCoA's CE
    d, model, frozen, batch = _setup("ucat", tiny)
    out = d.loss(batch, model, frozen, _adversary(enabled=False))
    assert out.terms["dirichlet_kl"] == 0.0
    assert out.total.item() == pytest.approx(torch.nn.functional.cross_entropy(model(batch.x), batch.y).item(), rel=1e-6)
    # CAW on a perturbed copy: the method equals caw_loss on the same tensors; the feature term uses x' for both
    for features in ("unnormalised", "normalised"):
        d, model, frozen, batch = _setup("caw", tiny, features=features)
        out0 = d.loss(batch, model, frozen, _adversary())
        assert out0.terms["feature_l2"] == 0.0  # θ = θ0 on the same adversarial images
        with torch.no_grad():
            model.visual.proj.add_(0.05 * torch.randn_like(model.visual.proj))
        out = d.loss(batch, model, frozen, _adversary())
        x_adv = _adversary()(model, batch.x, batch.y)
        with torch.no_grad():
            e, e0 = embed(model, x_adv), embed(frozen, x_adv)
            if features == "normalised":
                f, f0 = torch.nn.functional.normalize(e, dim=-1), torch.nn.functional.normalize(e0, dim=-1)
            else:
                f, f0 = e, e0
            ref, _ = caw_loss(model.logits_from_embedding(e), frozen(batch.x), batch.y, f, f0)
        assert out.terms["feature_l2"] > 0
        assert out.total.item() == pytest.approx(ref.item(), rel=1e-5)


# --- training and the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_trains_on_the_micro_protocol_and_changes_the_weights(name, tmp_path):
    from zsrbench.training import train_defense

    r = train_defense(name, protocol="micro", out_dir=tmp_path / name, steps=3, batch_size=16, seed=0,
                      text_cache=False, keep_checkpoints=False, hparams={"warmup_steps": 1})
    m = r.manifest
    assert r.completed and m["defense"] == name and m["steps"] == 3
    assert all(math.isfinite(e["loss"]) for e in m["loss_curve"]) and len(m["loss_curve"]) == 3
    assert m["visual_sha256"] != m["base_model"]["visual_sha256"] and m["frozen_original_unchanged"]
    saved = json.loads((tmp_path / name / "manifest.json").read_text())
    assert saved["quirks"] == dict(DEFENSES.get(name).quirks)
    keys = ("t", "tau") if name == "ucat" else ("alpha", "beta", "detach_weight", "features")
    assert all(k in saved["hparams"] for k in keys)


def test_cli_lists_and_trains_the_new_defenses(tmp_path):
    from typer.testing import CliRunner

    from zsrbench import catalog
    from zsrbench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["list", "defenses"])
    assert res.exit_code == 0, res.output
    assert "ucat" in res.output and "caw" in res.output
    rows = {r["name"]: r for r in catalog.describe_entries("defenses")}
    assert rows["ucat"]["at inference"] == rows["caw"]["at inference"] == "weights only"
    res = runner.invoke(app, ["train", "--defense", "caw", "--protocol", "synthetic", "--steps", "2", "--batch-size",
                              "16", "--out", str(tmp_path / "c"), "--device", "cpu", "--set", "warmup_steps=1",
                              "--set", "detach_weight=true", "--set", "beta=0.5"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert m["hparams"]["detach_weight"] is True and m["hparams"]["beta"] == 0.5 and m["steps"] == 2
    res = runner.invoke(app, ["train", "--defense", "ucat", "--protocol", "synthetic", "--out", str(tmp_path / "e"),
                              "--set", "tau=0"])
    assert res.exit_code == 2 and "tau" in res.output and "Traceback" not in res.output
