"""Defense losses, text-guided attention maps, the training adversary and the published-checkpoint catalogue.

Offline, CPU, tiny models (``zsr-tiny``: 32 px, 8 px patches → a 4×4 grid).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zsrbench.defenses import attention as att
from zsrbench.models import catalogue, zoo_fetch
from zsrbench.defenses.base import Adversary, Defense, LoadSpec, LossOutput, TrainBatch, TrainHparams
from zsrbench.defenses.comp_tga import comp_tga_loss
from zsrbench.defenses.fare import fare_loss
from zsrbench.defenses.pmg_aft import pmg_aft_loss
from zsrbench.defenses.tecoa import tecoa_loss
from zsrbench.defenses.tga_zsr import tga_loss
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS, DEFENSES, load_builtins

TRAINED = ("tecoa", "pmg_aft", "fare", "tga_zsr", "comp_tga")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # 2 shared cores: torch's intra-op threads only add contention for these tiny models
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    """A random-init zsr-tiny CLIP, the synthetic shapes set, and the class/non-class text heads."""
    from zsrbench.models.clip import build_clip
    from zsrbench.models.classifier import text_head

    load_builtins()
    torch.manual_seed(0)
    parts = build_clip("zsr-tiny")
    data = DATASETS.get("synthetic_shapes").build(None)
    x = torch.stack([data.dataset[i][0] for i in range(6)])
    y = torch.tensor([data.dataset[i][1] for i in range(6)])
    names = data.info.classnames
    head = text_head(parts, [[f"This is a photo of a {c}"] for c in names], cache=False)[0]
    non = text_head(parts, [[f"This is not a photo of a {c}"] for c in names], cache=False)[0]
    return parts, x, y, head, non


def classifiers(tiny, logit_scale=100.0):
    from zsrbench.models.classifier import ZeroShotClassifier

    parts, x, y, head, non = tiny
    visual = copy.deepcopy(parts.visual)
    frozen_visual = copy.deepcopy(parts.visual).requires_grad_(False)
    model = ZeroShotClassifier(visual, head, image_size=parts.image_size, logit_scale=logit_scale)
    frozen = ZeroShotClassifier(frozen_visual, head, image_size=parts.image_size, logit_scale=logit_scale)
    return model, frozen


def adversary(seed=0, **kw):
    args = dict(eps=1 / 255, step=1 / 255, steps=2, generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return Adversary(**args)


# --- registration and hyper-parameters -----------------------------------------------------------------------


def test_registered_with_spec_defaults():
    load_builtins()
    for name in TRAINED:
        cls = DEFENSES.get(name)
        assert cls.name == name and cls.trainable and cls.paper and cls.description
        hp = cls.default_hparams
        assert dataclasses.is_dataclass(hp) and isinstance(hp, TrainHparams)
        with pytest.raises(dataclasses.FrozenInstanceError):
            hp.lr = 1.0  # type: ignore[misc]
        hp.validate()
    # §1 training adversary for the supervised four
    for name in ("tecoa", "pmg_aft", "tga_zsr", "comp_tga"):
        hp = DEFENSES.get(name).default_hparams
        assert (hp.eps, hp.attack_step, hp.attack_steps, hp.attack_momentum) == (1.0, 1.0, 2, 0.0)
        assert hp.optimizer == "sgd" and hp.momentum == 0.9 and hp.weight_decay == 0 and hp.warmup_steps == 1000
        assert hp.schedule == "cosine" and hp.epochs == 10 and hp.template == "This is a photo of a {}"
    tecoa, pmg = DEFENSES.get("tecoa").default_hparams, DEFENSES.get("pmg_aft").default_hparams
    assert (tecoa.lr, tecoa.batch_size) == (1e-5, 128)
    assert (pmg.lr, pmg.batch_size, pmg.train_logit_scale, pmg.kl_reduction, pmg.detach_clean) == (5e-5, 256, 1.0, "sum", False)
    assert pmg.train_normalization == "clip"
    tga, comp = DEFENSES.get("tga_zsr").default_hparams, DEFENSES.get("comp_tga").default_hparams
    assert (tga.lr, tga.batch_size, tga.alpha, tga.beta, tga.attention_norm) == (1e-4, 128, 0.08, 0.05, "token_axis")
    assert (comp.alpha, comp.beta, comp.nonclass_template) == (0.10, 0.07, "This is not a photo of a {}")
    fare = DEFENSES.get("fare").default_hparams
    assert (fare.optimizer, fare.lr, fare.weight_decay, fare.batch_size, fare.steps, fare.warmup_steps) == \
        ("adamw", 1e-5, 1e-4, 128, 20000, 1400)
    assert (fare.attack_steps, fare.attack_step, fare.attack_momentum, fare.eps, fare.precision) == (10, 1.0, 0.9, 2.0, "fp32")
    # the quirk choices are documented per defense
    assert "attention_norm" in DEFENSES.get("tga_zsr").quirks and "kl_reduction" in DEFENSES.get("pmg_aft").quirks


def test_hparam_overrides_and_errors():
    tga = DEFENSES.get("tga_zsr")(alpha=0.2, attention_norm="per_token")
    assert tga.hp.alpha == 0.2 and tga.hp.attention_norm == "per_token" and tga.hp.beta == 0.05
    assert tga.hparams_dict()["attention_norm"] == "per_token"
    with pytest.raises(ZsrError, match="no hyper-parameter gamma"):
        DEFENSES.get("tga_zsr")(gamma=1.0)
    with pytest.raises(ZsrError, match="attention_norm"):
        DEFENSES.get("tga_zsr")(attention_norm="rows").hp.validate()
    with pytest.raises(ZsrError, match="explicit"):
        DEFENSES.get("comp_tga")(distance="gram").hp.validate()
    with pytest.raises(ZsrError, match="not trainable"):
        DEFENSES.get("clip")().loss(None, None, None, None)


# --- losses: hand-computed values --------------------------------------------------------------------------


LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
Y = torch.tensor([0, 2])


def _ce_by_hand() -> float:
    l0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    l1 = -math.log(math.exp(3) / (1 + math.e + math.exp(3)))
    return (l0 + l1) / 2


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def _kl(p_row, q_row) -> float:  # KL(P ‖ Q) from logits
    p, q = _softmax(p_row), _softmax(q_row)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_tecoa_loss_by_hand():
    assert tecoa_loss(LOGITS, Y).item() == pytest.approx(_ce_by_hand(), rel=1e-6)


def test_pmg_aft_loss_by_hand():
    frozen_adv = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    clean = torch.tensor([[3.0, 0.0, -1.0], [0.5, 0.0, 2.0]])
    kl_ori = sum(_kl(frozen_adv[i].tolist(), LOGITS[i].tolist()) for i in range(2))
    kl_clean = sum(_kl(clean[i].tolist(), LOGITS[i].tolist()) for i in range(2))
    total, terms = pmg_aft_loss(LOGITS, frozen_adv, clean, Y)
    assert total.item() == pytest.approx(_ce_by_hand() + kl_ori + kl_clean, rel=1e-5)
    assert terms["kl_frozen_adv"] == pytest.approx(kl_ori, rel=1e-5)
    total, _ = pmg_aft_loss(LOGITS, frozen_adv, clean, Y, alpha=0.5, beta=2.0, kl_reduction="batchmean")
    assert total.item() == pytest.approx(_ce_by_hand() + 0.5 * kl_ori / 2 + 2.0 * kl_clean / 2, rel=1e-5)
    # the clean branch is not detached by default (original code), detached on request
    for detach, has_grad in ((False, True), (True, False)):
        c = clean.clone().requires_grad_(True)
        adv = LOGITS.clone().requires_grad_(True)
        pmg_aft_loss(adv, frozen_adv, c, Y, detach_clean=detach)[0].backward()
        assert (c.grad is not None and c.grad.abs().sum() > 0) == has_grad


def test_fare_loss_by_hand():
    emb_adv = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    emb_clean = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert fare_loss(emb_adv, emb_clean).item() == pytest.approx((5 + 25) / 2)


def test_tga_and_comp_loss_by_hand():
    a_adv = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    a_clean = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    a_frozen = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.0]])
    d_ar = (1.0 + 0.5) / 2  # ‖(1,0,0,0)‖ = 1, ‖(0,0,0,0.5)‖ = 0.5
    d_amc = (0.0 + math.sqrt(3 * 0.25 + 1.0)) / 2  # 0, ‖(-0.5,-0.5,-0.5,1)‖
    total, terms = tga_loss(LOGITS, Y, a_adv, a_clean, a_frozen, alpha=0.08, beta=0.05)
    assert total.item() == pytest.approx(_ce_by_hand() + 0.08 * d_ar + 0.05 * d_amc, rel=1e-6)
    assert terms["attn_refine"] == pytest.approx(d_ar) and terms["attn_constraint"] == pytest.approx(d_amc)
    total, _ = comp_tga_loss(LOGITS, Y, a_adv, a_clean, a_frozen)
    assert total.item() == pytest.approx(_ce_by_hand() + 0.10 * d_ar + 0.07 * d_amc, rel=1e-6)


# --- attention maps ----------------------------------------------------------------------------------------


def _feats(cls, patches):
    return torch.tensor([[cls, *patches]], dtype=torch.float32)


PATCHES = [[1.0, 0.0], [2.0, 4.0], [0.5, 5.0], [3.0, 0.1]]  # 2×2 grid, row-major


def test_attention_token_axis_vs_per_token():
    feats = _feats([1.0, 1.0], PATCHES)
    text = torch.tensor([[1.0, 0.0]])
    # token axis: channel 0 is divided by one norm over all tokens → scores ∝ (1, 2, .5, 3) → min-max
    small = att.attention_small(feats, text, "token_axis")
    assert torch.allclose(small, torch.tensor([[0.2, 0.6, 0.0, 1.0]]), atol=1e-6)
    # per token: cosine of each token with the text → (1, .447, .0995, .9994): peak at patch 0, not patch 3
    cos = torch.tensor([[1.0, 2 / math.sqrt(20), 0.5 / math.sqrt(25.25), 3 / math.sqrt(9.01)]])
    expected = (cos - cos.min()) / (cos.max() - cos.min())
    per_token = att.attention_small(feats, text, "per_token")
    assert torch.allclose(per_token, expected, atol=1e-6)
    assert small.argmax() == 3 and per_token.argmax() == 0
    # upsampled to the input size: range [0,1], peak in patch 3's quadrant (bottom right), equals the bilinear map
    big = att.text_guided_attention(feats, text, size=32)
    assert big.shape == (1, 32 * 32)
    assert big.min().item() == pytest.approx(0.0, abs=1e-6) and big.max().item() == pytest.approx(1.0, abs=1e-6)
    r, c = divmod(int(big.argmax()), 32)
    assert r >= 16 and c >= 16
    ref = F.interpolate(small.view(1, 1, 2, 2), size=(32, 32), mode="bilinear", align_corners=False).flatten(1)
    assert torch.allclose(big, ref)
    corners = big.view(32, 32)[[0, 0, 31, 31], [0, 31, 0, 31]]  # row-major: p0 top-left ... p3 bottom-right
    assert torch.allclose(corners, torch.tensor([0.2, 0.6, 0.0, 1.0]), atol=1e-6)


def test_attention_token_axis_includes_cls():
    text = torch.tensor([[1.0, 1.0]])
    patches = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    feats = _feats([7.0, 1.0], patches)
    n0, n1 = math.sqrt(49 + 2), math.sqrt(1 + 2)  # channel norms over CLS + patches
    raw = torch.tensor([[1 / n0, 1 / n1, 1 / n0 + 1 / n1, 0.0]])
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    got = att.attention_small(feats, text, "token_axis")
    assert torch.allclose(got, expected, atol=1e-6)
    without_cls = att.attention_small(_feats([0.0, 0.0], patches), text, "token_axis")
    assert torch.allclose(without_cls, torch.tensor([[0.5, 0.5, 1.0, 0.0]]), atol=1e-6)
    assert not torch.allclose(got, without_cls, atol=1e-2)


def test_minmax_constant_map_is_zero_not_nan():
    out = att.minmax(torch.full((2, 4), 3.0))
    assert torch.equal(out, torch.zeros(2, 4))


def test_complementary_map():
    feats = torch.randn(3, 1 + 16, 8, generator=torch.Generator().manual_seed(1))
    t_class, t_non = torch.randn(3, 8), torch.randn(3, 8)
    a = att.text_guided_attention(feats, t_class, size=32)
    a_non = att.text_guided_attention(feats, t_non, size=32)
    comp = att.complementary_attention(feats, t_class, t_non, size=32)
    assert torch.equal(comp, a * (1 - a_non))
    assert comp.min() >= 0 and comp.max() <= 1
    assert comp.amax(1).lt(1).any()  # no re-normalisation after the product


def test_gram_form_equals_explicit_upsample():
    g = torch.Generator().manual_seed(0)
    for side, size in ((4, 32), (7, 224)):
        a, b = torch.rand(5, side * side, generator=g), torch.rand(5, side * side, generator=g)
        explicit = att.map_l2(att.upsample(a, size), att.upsample(b, size))
        exact = att.upsampled_l2(a, b, att.upsample_gram(side, size))
        assert torch.allclose(exact, explicit, rtol=1e-5, atol=1e-6)
        u = att.upsample_matrix(side, size)
        assert torch.allclose((a.double() @ u.t()).float(), att.upsample(a, size), atol=1e-6)
    # a zero distance has gradient 0 (not NaN) in both forms
    a = torch.rand(2, 16, requires_grad=True)
    att.upsampled_l2(a, a.detach(), att.upsample_gram(4, 32)).sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(a))


def test_projected_tokens_are_ln_post_times_proj(tiny):
    model, _ = classifiers(tiny)
    x = tiny[1][:2]
    emb, feats = att.projected_tokens(model, x)
    v = model.visual
    with torch.no_grad():
        tokens = v.transformer(v._embeds(model.prepare(x)))
        ref = v.ln_post(tokens) @ v.proj
    assert feats.shape == (2, 1 + 16, 32)
    assert torch.allclose(feats, ref, atol=1e-5) and torch.allclose(emb, ref[:, 0], atol=1e-5)


# --- the training adversary --------------------------------------------------------------------------------


def test_adversary_stays_in_ball_and_leaves_no_param_grads(tiny):
    model, _ = classifiers(tiny)
    x, y = tiny[1], tiny[2]
    x_adv = adversary(eps=2 / 255)(model, x, y)
    assert (x_adv - x).abs().max() <= 2 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.visual.parameters())  # restored after the attack
    assert not torch.equal(x_adv, x)
    # it ascends the loss
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    # same seed, same iterate; momentum rule with μ = 0 is plain sign-PGD
    assert torch.equal(adversary(seed=3)(model, x, y), adversary(seed=3)(model, x, y))
    assert torch.equal(adversary(seed=3, momentum=0.0)(model, x, y), adversary(seed=3)(model, x, y))


def test_reseed_option_gives_every_training_attack_the_same_random_start(tiny):
    """Comp-TGA's official code re-seeds before every training attack: off by default, reproducible when asked."""
    model, _ = classifiers(tiny)
    x, y = tiny[1], tiny[2]

    def two_starts(reseed):
        d = DEFENSES.get("comp_tga")(reseed_training_attack=reseed)
        adv = d.make_adversary("cpu", torch.Generator().manual_seed(7))
        start = dataclasses.replace(adv, steps=0)  # steps=0: the attack returns its random start
        return adv, start(model, x, y), start(model, x, y)

    adv, first, second = two_starts(True)
    assert adv.reseed == 7 and adv.describe()["reseed"] == 7
    assert torch.equal(first, second) and not torch.equal(first, x)
    adv, first, second = two_starts(False)
    assert adv.reseed is None and not torch.equal(first, second)
    # the full attack too: consecutive attacks on the same batch are identical only with the option
    for reseed, same in ((True, True), (False, False)):
        d = DEFENSES.get("comp_tga")(reseed_training_attack=reseed)
        a = d.make_adversary("cpu", torch.Generator().manual_seed(7))
        assert torch.equal(a(model, x, y), a(model, x, y)) is same
    assert "reseed_training_attack" in DEFENSES.get("comp_tga").quirks
    assert DEFENSES.get("comp_tga").default_hparams.reseed_training_attack is False


def test_quirk_notes_do_not_overstate_the_gradient_leak():
    for name in ("tecoa", "tga_zsr", "pmg_aft"):
        text = " ".join(DEFENSES.get(name).notes)
        assert "loss scale" in text and "small but not zero" in text and "leak into the update" not in text


# --- each defense on the tiny model ------------------------------------------------------------------------


def _defense_setup(name, tiny):
    d = DEFENSES.get(name)()
    model, frozen = classifiers(tiny, logit_scale=d.hp.train_logit_scale)
    parts, x, y, head, non = tiny
    texts = {"class": head, "nonclass": non} if name == "comp_tga" else {"class": head}
    return d, model, frozen, TrainBatch(x=x, y=y, texts=texts)


@pytest.mark.parametrize("name", TRAINED)
def test_loss_grads_reach_only_the_visual_encoder_and_frozen_is_unchanged(name, tiny):
    d, model, frozen, batch = _defense_setup(name, tiny)
    text_params = [p for n, p in tiny[0].model.named_parameters() if not n.startswith("visual.")]
    frozen_before = {k: v.clone() for k, v in frozen.state_dict().items()}
    model_before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    opt = torch.optim.SGD(model.visual.parameters(), lr=1e-2)
    model.train()
    out = d.loss(batch, model, frozen, adversary())
    assert isinstance(out, LossOutput) and out.total.dim() == 0 and torch.isfinite(out.total)
    assert out.terms and all(isinstance(v, float) for v in out.terms.values())
    opt.zero_grad()
    out.total.backward()
    grads = [p.grad for p in model.visual.parameters()]
    assert sum(g is not None and g.abs().sum().item() > 0 for g in grads) >= len(grads) - 2
    assert all(p.grad is None for p in frozen.parameters())
    assert all(p.grad is None for p in text_params)
    opt.step()
    for k, v in frozen.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k
    assert any(not torch.equal(v, model_before[k]) for k, v in model.visual.state_dict().items())


def test_tga_loss_method_matches_pure_function(tiny):
    d, model, frozen, batch = _defense_setup("tga_zsr", tiny)
    off = adversary(enabled=False)  # x' = x: the refinement term equals the constraint term
    out = d.loss(batch, model, frozen, off)
    x, y, head = batch.x, batch.y, batch.texts["class"]
    with torch.no_grad():
        _, f = att.projected_tokens(model, x)
        _, f0 = att.projected_tokens(frozen, x)
        # the maps are upsampled to 224×224 by default (the official size), not to the model's 32 px
        a, a0 = att.text_guided_attention(f, head[y], size=224), att.text_guided_attention(f0, head[y], size=224)
        ref, _ = tga_loss(model(x), y, a, a, a0, alpha=0.08, beta=0.05)
    assert out.total.item() == pytest.approx(ref.item(), rel=1e-5)
    # θ = θ0 at the start: the trained and the frozen copy compute the same maps, bit for bit (same kernels)
    assert out.terms["attn_constraint"] == 0.0 and out.terms["attn_refine"] == 0.0
    # the default exact small-matrix distance, the cell-moment form and the materialised 224×224 maps agree
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.visual.proj.add_(0.05 * torch.randn_like(perturbed.visual.proj))
    terms = {dist: DEFENSES.get("tga_zsr")(distance=dist).loss(batch, perturbed, frozen, adversary(seed=5)).terms
             for dist in ("gram", "explicit", "moments")}
    assert terms["gram"]["attn_refine"] > 0.1
    for dist in ("explicit", "moments"):
        for k in ("loss", "ce", "attn_refine", "attn_constraint"):
            if k in terms["gram"]:
                assert terms[dist][k] == pytest.approx(terms["gram"][k], rel=1e-5), (dist, k)
    # with attention_size=32 the distance is that of 32×32 maps (much smaller: the weights are calibrated at 224)
    small = DEFENSES.get("tga_zsr")(attention_size=32).loss(batch, perturbed, frozen, adversary(seed=5)).terms
    assert small["attn_refine"] == pytest.approx(terms["gram"]["attn_refine"] * 32 / 224, rel=0.05)


def test_attention_size_defaults_to_224_and_is_recorded():
    for name in ("tga_zsr", "comp_tga"):
        d = DEFENSES.get(name)()
        assert d.hp.attention_size == 224 and d.hparams_dict()["attention_size"] == 224
        assert "224" in d.quirks["upsampling"]
        assert d.hparams_dict()["distance"] == ("gram" if name == "tga_zsr" else "moments")
    assert DEFENSES.get("tga_zsr")(attention_size=None).hparams_dict()["attention_size"] is None  # model's size
    with pytest.raises(ZsrError, match="attention_size"):
        DEFENSES.get("tga_zsr")(attention_size=0).hp.validate()


def test_product_map_distance_equals_explicit_upsample():
    """Comp-TGA's ‖U a₁ ⊙ (1 − U n₁) − U a₂ ⊙ (1 − U n₂)‖₂ from grid maps equals the materialised maps' norm."""
    g = torch.Generator().manual_seed(0)
    for side, size in ((4, 32), (7, 224), (4, 224), (5, 7), (7, 4)):
        a = torch.rand(4, 2, side * side, generator=g).requires_grad_(True)
        b = torch.rand(4, 2, side * side, generator=g)

        def explicit(m):
            return att.upsample(m[:, 0], size) * (1 - att.upsample(m[:, 1], size))

        ref = att.map_l2(explicit(a), explicit(b))
        (g_ref,) = torch.autograd.grad(ref.sum(), a)
        got = att.product_upsampled_l2(a, b, size)
        (g_got,) = torch.autograd.grad(got.sum(), a)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), (side, size)
        assert torch.allclose(g_got, g_ref, rtol=1e-4, atol=1e-5), (side, size)
    a = torch.rand(2, 2, 16, requires_grad=True)  # a zero distance has gradient 0, not NaN
    att.product_upsampled_l2(a, a.detach(), 224).sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(a))


def test_comp_tga_compact_distance_matches_explicit_maps(tiny):
    d, model, frozen, batch = _defense_setup("comp_tga", tiny)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.visual.proj.add_(0.05 * torch.randn_like(perturbed.visual.proj))
    fast = d.loss(batch, perturbed, frozen, adversary(seed=5))
    slow = DEFENSES.get("comp_tga")(distance="explicit").loss(batch, perturbed, frozen, adversary(seed=5))
    assert fast.terms["attn_refine"] > 0.1
    for k in ("ce", "attn_refine", "attn_constraint"):
        assert fast.terms[k] == pytest.approx(slow.terms[k], rel=1e-5), k
    assert fast.total.item() == pytest.approx(slow.total.item(), rel=1e-5)


@pytest.mark.parametrize("name", ("tga_zsr", "comp_tga", "pmg_aft"))
def test_loss_under_autocast(name, tiny):
    """The loop runs losses under autocast on CUDA; CPU bf16 autocast exercises the same code path."""
    d, model, frozen, batch = _defense_setup(name, tiny)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d.loss(batch, model, frozen, adversary())
        if name != "pmg_aft":
            _, f = att.projected_tokens(model, batch.x)
            assert att.text_guided_attention(f, batch.texts["class"][batch.y], size=32).dtype == torch.float32
    assert out.total.dtype == torch.float32 and torch.isfinite(out.total)
    out.total.backward()
    assert all(p.grad is None for p in frozen.parameters())


def test_comp_tga_uses_the_nonclass_prompts(tiny):
    d, model, frozen, batch = _defense_setup("comp_tga", tiny)
    prompts = d.text_prompts(("cat", "dog"), [["a cat"], ["a dog"]])
    assert prompts == {"class": [["This is a photo of a cat"], ["This is a photo of a dog"]],
                       "nonclass": [["This is not a photo of a cat"], ["This is not a photo of a dog"]]}
    with pytest.raises(ZsrError, match="non-class"):
        d.loss(TrainBatch(x=batch.x, y=batch.y, texts={"class": batch.texts["class"]}), model, frozen, adversary())
    # TeCoA with template=None uses the dataset's own prompts
    assert DEFENSES.get("tecoa")(template=None).text_prompts(("cat",), [["a cat", "the cat"]]) == {"class": [["a cat", "the cat"]]}


def test_fare_loss_method_uses_unnormalised_embeddings(tiny):
    d, model, frozen, batch = _defense_setup("fare", tiny)
    out = d.loss(batch, model, frozen, adversary(enabled=False))
    assert out.total.item() == pytest.approx(0.0, abs=1e-8)  # θ = θ0 and x' = x
    adv = d.make_adversary("cpu", torch.Generator().manual_seed(0))
    assert (adv.steps, adv.momentum, adv.eps, adv.step) == (10, 0.9, 2 / 255, 1 / 255)
    out = d.loss(batch, model, frozen, adv)
    with torch.no_grad():
        e = model.visual(model.prepare(batch.x))
    assert out.total.item() > 0 and e.norm(dim=1).mean() > 1.5  # unnormalised scale


# --- the published-checkpoint catalogue --------------------------------------------------------------------


def test_catalogue_names_resolve():
    for name, hub in (("fare2-clip", "chs20/fare2-clip"), ("fare4-clip", "chs20/fare4-clip"),
                      ("tecoa2-clip", "chs20/tecoa2-clip"), ("tecoa4-clip", "chs20/tecoa4-clip")):
        e = catalogue.lookup(name)
        assert e is not None and e.hf_hub == hub and e.url == f"https://huggingface.co/{hub}"
        # OpenAI-based ViT-L/14 checkpoints: the OpenAI weights use QuickGELU
        assert e.architecture == "ViT-L-14-quickgelu" and e.defense == name[:4].replace("teco", "tecoa")
        assert e.base == "openai" and e.activation == "quickgelu"
        assert e.train_eps == float(name[4] if name.startswith("fare") else name[5])
        # fare2-clip's sha256 is pinned in zoo.json (from the Hub's LFS page); the others are pinned on download
        pinned = "9fb1f8759c89905809da8ce761a4b90e1c22beaaea7c68f3917647eeb0a230a7" if name == "fare2-clip" else None
        assert e.sha256 == pinned
    assert catalogue.lookup("FARE2") is catalogue.lookup("hf-hub:chs20/fare2-clip") is catalogue.lookup("fare2-clip")
    assert catalogue.lookup("/some/file.pt") is None
    with pytest.raises(ZsrError, match="Did you mean 'fare2-clip'"):
        catalogue.get("fare2-clp")


def _no_network(calls):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def fake(repo_id, filename, *, cache, local_files_only):
        calls.append((repo_id, filename, local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not in cache")
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    return fake


def test_catalogue_missing_cache_without_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ZSRBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("ZSRBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list = []
    monkeypatch.setattr(zoo_fetch, "_hf_download", _no_network(calls))
    with pytest.raises(ZsrError, match="Could not download checkpoint 'fare2-clip'.*huggingface.co/chs20/fare2-clip"):
        DEFENSES.get("fare")().load(LoadSpec(model="ViT-L-14-quickgelu", checkpoint="fare2-clip"))
    assert ("chs20/fare2-clip", "open_clip_config.json", True) in calls  # the cache is tried first
    assert ("chs20/fare2-clip", "open_clip_config.json", False) in calls
    # offline mode / allow_download=False: the cache only, never the network
    calls.clear()
    monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
    with pytest.raises(ZsrError, match="not in the cache"):
        DEFENSES.get("clip")().load(LoadSpec(model="x", checkpoint="tecoa4-clip"))
    assert calls and all(local for _, _, local in calls)
    # a defense/checkpoint mismatch is named
    with pytest.raises(ZsrError, match="published fare checkpoint"):
        DEFENSES.get("tecoa")().load(LoadSpec(model="x", checkpoint="fare4"))
    # a zoo entry whose method zsrbench has no defense for (defense clip): one way to load it
    with pytest.raises(ZsrError) as err:
        DEFENSES.get("tecoa")().load(LoadSpec(model="x", checkpoint="simclip2-vit-l-14"))
    assert str(err.value).endswith("not a tecoa checkpoint: it is published CLIP weights of a method zsrbench has no "
                                   "defense for. Use --defense clip.")


def test_catalogue_download_cache_and_sha256(monkeypatch, tmp_path, tiny):
    """A fake hub repo holding a tiny open_clip folder: downloaded once, then loaded from the cache offline."""
    from safetensors.torch import save_file

    from zsrbench.models.clip import _open_clip
    from zsrbench.models.weights import sha256_file

    parts = tiny[0]
    repo = tmp_path / "hub"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps({"model_cfg": _open_clip().get_model_config("zsr-tiny")}))
    save_file({k: v.contiguous() for k, v in parts.model.state_dict().items()}, str(repo / "open_clip_model.safetensors"))
    digest = sha256_file(repo / "open_clip_model.safetensors")
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZSRBENCH_CACHE", str(cache))
    monkeypatch.delenv("ZSRBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list = []

    def fake(repo_id, filename, *, cache, local_files_only):
        from huggingface_hub.errors import LocalEntryNotFoundError

        calls.append(local_files_only)
        target = Path(cache) / repo_id.replace("/", "--") / filename
        if not target.exists():
            if local_files_only:
                raise LocalEntryNotFoundError("not cached")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((repo / filename).read_bytes())
        return str(target)

    monkeypatch.setattr(zoo_fetch, "_hf_download", fake)
    entry = catalogue.register(catalogue.CatalogueEntry(
        "tiny-fare-test", "fare", "zsr-tiny", "random", 2.0, "synthetic", "zsrbench/tiny-fare", "https://example.org/tiny",
        "test", sha256=digest))
    try:
        loaded = DEFENSES.get("fare")().load(LoadSpec(model="zsr-tiny", checkpoint="tiny-fare-test"))
        assert False in calls and loaded.source["checkpoint_sha256"] == digest and loaded.source["sha256_verified"]
        assert loaded.source["downloaded_now"]
        for k, v in parts.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[k], v), k
        calls.clear()
        monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
        again = DEFENSES.get("fare")().load(LoadSpec(model="zsr-tiny", checkpoint="tiny-fare-test"))
        assert calls and all(calls) and not again.source["downloaded_now"]
        catalogue.register(dataclasses.replace(entry, sha256="0" * 64))
        with pytest.raises(ZsrError, match="sha256"):
            DEFENSES.get("fare")().load(LoadSpec(model="zsr-tiny", checkpoint="tiny-fare-test"))
    finally:
        catalogue._EXTRA.pop("tiny-fare-test", None)


def test_defense_base_is_still_loadable():
    parts = Defense().load(LoadSpec(model="zsr-tiny"))
    assert parts.image_size == 32


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["tga_zsr", "comp_tga"])
def test_attention_terms_are_exactly_zero_at_the_start_on_any_core_count(tiny, name, threads):
    """zsr-tiny's attention has 2 heads, so torch's fused fast path is open to the frozen copy: the losses run
    both copies through the same kernels, and the maps agree bit for bit (was ~1e-5 apart)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d, model, frozen, batch = _defense_setup(name, tiny)
        out = d.loss(batch, model, frozen, adversary(enabled=False))
    finally:
        torch.set_num_threads(before)
    assert out.terms["attn_constraint"] == 0.0 and torch.backends.mha.get_fastpath_enabled()  # restored
