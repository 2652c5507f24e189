"""Gradient-free passes through a trace of the image tower: the same bits as the eager tower, or not used."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zsrbench.micro import tasks as T
from zsrbench.models.classifier import make_classifier
from zsrbench.models.clip import build_clip
from zsrbench.models.patch_embed import exact_patch_gradient, plain_patch_embedding
from zsrbench.models.traced import TracedTower, plain_inference


def micro_task(name: str):
    """The micro CLIP's classifier for one micro task (parameters frozen, as attacks run it), its images and labels."""
    parts = build_clip("zsr-micro", "zsrbench")
    task = T.TASKS[name]
    clf, _ = make_classifier(parts, [[p] for p in task.prompts()], cache=False)
    clf.requires_grad_(False)
    x, y = T.generate_split(task.name)
    return clf, x.float() / 255, y


@pytest.fixture(scope="module")
def micro():
    return micro_task("micro_count")


def _eager(clf, x):
    with torch.no_grad():
        return clf.logits_from_embedding(clf.visual(clf.prepare(x)))


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 17, 64])
def test_no_grad_logits_through_the_trace_are_bit_identical(micro, batch):
    clf, x, _ = micro
    xb = x[:batch].contiguous()
    with torch.no_grad():
        traced = clf(xb)
    assert torch.equal(traced, _eager(clf, xb))
    assert any(k[0][0] == batch for k in clf.traced._exact)  # the shape was checked, and served if it matched


def test_gradient_passes_and_training_run_the_eager_tower(micro):
    clf, x, _ = micro
    xb = x[:6].clone().requires_grad_(True)
    assert clf.traced(clf.prepare(xb)) is None
    with torch.no_grad():
        clf.visual.train()
        try:
            assert clf.traced(clf.prepare(x[:6])) is None
        finally:
            clf.visual.eval()
        with FlopCounterMode(display=False):  # a dispatch mode expects the eager calls
            assert clf.traced(clf.prepare(x[:6])) is None
        assert clf.traced(clf.prepare(x[:6])) is not None


def test_a_forward_hook_is_called_and_the_trace_is_not_used(micro):
    clf, x, _ = micro
    calls = []
    handle = clf.visual.transformer.resblocks[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = clf(x[:4])
    finally:
        handle.remove()
    assert calls == [1] and torch.equal(out, _eager(clf, x[:4]))


def test_changed_weights_and_replaced_modules_are_seen(micro):
    clf, x, _ = micro
    xb = x[:8].contiguous()
    with torch.no_grad():
        clf(xb)
        trace = clf.traced._trace
        w = clf.visual.transformer.resblocks[1].mlp.c_fc.weight
        before = w.clone()
        try:
            w.mul_(1.5)  # in place: the same trace sees it
            assert torch.equal(clf(xb), _eager(clf, xb)) and clf.traced._trace is trace
        finally:
            w.copy_(before)
        plain_patch_embedding(clf.visual)  # a module replaced: traced again
        try:
            assert torch.equal(clf(xb), _eager(clf, xb)) and clf.traced._trace is not trace
        finally:
            exact_patch_gradient(clf.visual)


class _BranchOnBatch(nn.Module):
    """A tower whose trace bakes a Python branch on the batch size: wrong for other batch sizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * 2 if x.shape[0] > 4 else x.flatten(1)


def test_where_the_trace_gives_other_bits_the_eager_tower_serves_that_shape():
    tower = TracedTower(_BranchOnBatch().eval())
    with torch.no_grad():
        assert tower(torch.ones(8, 3, 2, 2)) is not None  # traced at batch 8, its own shape matches
        assert tower(torch.ones(2, 3, 2, 2)) is None  # the trace would double it: not used
    assert [v for k, v in sorted(tower._exact.items())] == [False, True]


def test_copies_carry_no_trace_and_plain_inference_turns_it_off(micro):
    clf, x, _ = micro
    with torch.no_grad():
        clf(x[:4])
    assert clf.traced._trace is not None
    assert pickle.loads(pickle.dumps(clf.traced))._trace is None
    twin = copy.deepcopy(clf)
    assert twin.traced._trace is None
    plain_inference(twin)
    with torch.no_grad():
        assert twin.traced(twin.prepare(x[:4])) is None


def test_autoattack_flags_and_adversarial_images_are_bit_identical(micro):
    from zsrbench.attacks.autoattack_run import run_autoattack

    clf, x, y = micro
    runs = []
    for enabled in (True, False):
        clf.traced.enabled = enabled
        runs.append(run_autoattack("autoattack", clf, x[:12], y[:12], eps=4 / 255, seed=0, n_queries=150))
    clf.traced.enabled = True
    (a, b) = runs
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert set(a.info["stage_seconds"]) >= {"clean", "apgd-ce", "square"}
