"""A ViT's attention without nn.MultiheadAttention's layout copies: the same bits, or not used."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from test_patch_embed import _grad  # logits and the input gradient of a targeted cross-entropy
from test_traced import micro_task  # the micro CLIP's classifier for one task, its images and labels
from zsrbench.models import mha as M
from zsrbench.models.patch_embed import plain_patch_embedding
from zsrbench.models.traced import plain_inference


@pytest.fixture(scope="module")
def micro():
    clf, x, y = micro_task("micro_position")
    plain = copy.deepcopy(clf)  # what the papers' code runs: torch's own modules, eager passes
    plain_patch_embedding(plain.visual)
    M.plain_attention(plain.visual)
    plain_inference(plain)
    return clf, plain, x, y


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 17, 64])
def test_logits_and_input_gradients_are_bit_identical(micro, batch):
    clf, plain, x, _ = micro
    assert all(type(b.attn) is M.DirectAttention for b in clf.visual.transformer.resblocks)
    assert all(type(b.attn) is nn.MultiheadAttention for b in plain.visual.transformer.resblocks)
    xb = x[:batch].contiguous()
    (l1, g1), (l2, g2) = _grad(clf, xb), _grad(plain, xb)
    assert torch.equal(l1, l2) and torch.equal(g1, g2)
    with torch.no_grad():
        assert torch.equal(clf(xb), plain(xb))
    verdicts = {k[4]: v for k, v in clf.visual.transformer.resblocks[0].attn._exact.items() if k[0][0] == batch}
    assert set(verdicts) == {False, True}  # checked without and with the input gradient
    if batch >= 4:  # batches of 2-3 rows take another GEMM path on CPU: there the module's own forward serves
        assert all(verdicts.values())


def test_the_parameters_and_state_dict_stay_the_same(micro):
    clf, plain, _, _ = micro
    a, b = clf.visual.transformer.resblocks[2].attn, plain.visual.transformer.resblocks[2].attn
    assert list(a.state_dict()) == list(b.state_dict())
    parts_attn = clf.visual.transformer.resblocks[2].attn
    assert parts_attn.in_proj_weight is clf.visual.state_dict(keep_vars=True)["transformer.resblocks.2.attn.in_proj_weight"]


def test_where_the_bits_differ_the_modules_own_forward_serves(micro, monkeypatch):
    _, plain, x, _ = micro
    attn = copy.deepcopy(plain.visual.transformer.resblocks[0].attn)
    direct = M._swap(attn, M.DirectAttention)
    real = M.direct_attention
    monkeypatch.setattr(M, "direct_attention", lambda m, t: real(m, t) * (1 + 2 ** -20))
    t = torch.randn(6, 17, 96)
    with torch.no_grad():
        assert torch.equal(direct(t, t, t, need_weights=False)[0], attn(t, t, t, need_weights=False)[0])
    assert list(direct._exact.values()) == [False]


def test_training_weights_or_masks_take_the_modules_own_forward(micro):
    _, plain, _, _ = micro
    direct = M._swap(copy.deepcopy(plain.visual.transformer.resblocks[0].attn), M.DirectAttention)
    t = torch.randn(5, 17, 96)
    direct.requires_grad_(True)  # a weight gradient would sum rows in another order
    direct(t, t, t, need_weights=False)
    direct.requires_grad_(False)
    direct(t, t, t, need_weights=True)
    direct(t, t, t, need_weights=False, attn_mask=torch.zeros(17, 17))
    assert direct._exact == {}
    direct(t, t, t, need_weights=False)
    assert len(direct._exact) == 1


def test_autoattack_flags_and_adversarial_images_equal_the_plain_modules(micro):
    from zsrbench.attacks.autoattack_run import run_autoattack

    clf, plain, x, y = micro
    a = run_autoattack("autoattack", clf, x[:12], y[:12], eps=4 / 255, seed=0, n_queries=150)
    b = run_autoattack("autoattack", plain, x[:12], y[:12], eps=4 / 255, seed=0, n_queries=150)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def test_the_bench_counts_the_models_flops_not_its_checks(micro):
    from zsrbench.evaluation.bench import counted_flops

    clf, plain, x, _ = micro
    fresh = copy.deepcopy(clf)  # its per-shape checks not yet run
    for block in fresh.visual.transformer.resblocks:
        block.attn._exact.clear()
    xb = x[:7].contiguous()
    for backward in (False, True):
        assert counted_flops(fresh, xb, backward) == counted_flops(plain, xb, backward)
