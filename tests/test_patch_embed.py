"""The patch embedding's input gradient as a matmul: the same bits as the convolution backward, or not used."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from zsrbench.models import patch_embed as P
from zsrbench.models.classifier import make_classifier
from zsrbench.models.clip import build_clip

PROMPTS = [[f"a photo of a {c}"] for c in ("red", "green", "blue", "square")]


@pytest.fixture(scope="module")
def micro():
    parts = build_clip("zsr-micro", "zsrbench")
    clf, _ = make_classifier(parts, PROMPTS, cache=False)
    plain = copy.deepcopy(clf)
    conv = nn.Conv2d(3, 96, 8, stride=8, bias=False)
    conv.weight = plain.visual.conv1.weight
    plain.visual.conv1 = conv
    for m in (clf, plain):
        m.requires_grad_(False)
    return clf, plain, parts


def _grad(model, x):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, logits.argmax(1).roll(1), reduction="sum")
    return logits.detach(), torch.autograd.grad(loss, x)[0]


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 17, 64])
def test_the_micro_clips_logits_and_input_gradients_are_bit_identical(micro, batch):
    clf, plain, _ = micro
    assert isinstance(clf.visual.conv1, P.PatchEmbedConv) and type(plain.visual.conv1) is nn.Conv2d
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    (l1, g1), (l2, g2) = _grad(clf, x), _grad(plain, x)
    assert torch.equal(l1, l2) and torch.equal(g1, g2)
    assert any(v for k, v in clf.visual.conv1._exact.items() if k[1][0] == batch)  # the matmul was used


def test_the_weights_stay_the_same_tensor(micro):
    clf, _, parts = micro
    assert clf.visual.conv1.weight is parts.model.visual.conv1.weight
    assert "conv1.weight" in dict(clf.visual.named_parameters())


def test_where_the_bits_differ_the_convolution_backward_is_used(micro, monkeypatch):
    clf, plain, _ = micro
    real = P.patch_gradient
    monkeypatch.setattr(P, "patch_gradient", lambda g, w, h, wd: real(g, w, h, wd) * (1 + 2 ** -20))
    conv = copy.deepcopy(clf.visual.conv1)
    conv._exact.clear()
    fast = copy.deepcopy(clf)
    fast.visual.conv1 = conv
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_grad(fast, x)[1], _grad(plain, x)[1])
    assert set(conv._exact.values()) == {False}


def test_training_and_autocast_take_the_convolution():
    conv = P.PatchEmbedConv(3, 8, 4, stride=4, bias=False)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    conv(x).sum().backward()  # the weight needs its gradient: the plain convolution
    assert conv.weight.grad is not None and conv._exact == {}
    conv.requires_grad_(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x).float().sum().backward()
    assert conv._exact == {}


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (3, 3, 35, 33)])
def test_patch_gradient_matches_the_convolution_backward(shape):
    w = torch.randn(96, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.02
    x = torch.rand(shape, requires_grad=True)
    out = torch.nn.functional.conv2d(x, w, stride=8)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    ref = torch.autograd.grad(out, x, g)[0]
    assert torch.allclose(P.patch_gradient(g, w, shape[2], shape[3]), ref, atol=1e-6, rtol=0)


def test_only_a_plain_stride_equals_kernel_convolution_is_replaced():
    assert P.is_patch_embedding(nn.Conv2d(3, 8, 4, stride=4, bias=False))
    for conv in (nn.Conv2d(3, 8, 4, stride=2, bias=False), nn.Conv2d(3, 8, 4, stride=4, bias=True),
                 nn.Conv2d(3, 8, 4, stride=4, padding=1, bias=False)):
        assert not P.is_patch_embedding(conv)
    resnet_like = nn.Module()
    resnet_like.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    assert not P.exact_patch_gradient(resnet_like)
