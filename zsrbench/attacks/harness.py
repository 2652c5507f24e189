"""The harness around third-party attacks (official AutoAttack, torchattacks): eval mode without parameter
gradients, the caller's RNG state preserved, input checks, the class count, and the final projection and judgement.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from zsrbench.errors import ZsrError

@contextmanager
def attack_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` with parameter ``requires_grad`` off for the duration; everything restored afterwards.

    Attacks need gradients with respect to the input only. Switching the parameters off keeps third-party code
    that calls ``backward()`` (FAB) from accumulating ``.grad`` on them, and saves the parameter-gradient work.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training


@contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore torch's global RNG state (CPU, and ``device`` when it is a CUDA device) on exit."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def num_classes(model: Any, x: torch.Tensor) -> int:
    """The number of classes: ``logits.shape[1]`` of one forward pass on the first sample."""
    with torch.no_grad():
        logits = model(x[:1])
    if logits.ndim != 2:
        raise ZsrError(f"The model must return logits of shape [batch, classes]; got shape {tuple(logits.shape)}.")
    return int(logits.shape[1])


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous float32 NCHW images in [0, 1] and int64 labels on ``x.device``."""
    if x.ndim != 4:
        raise ZsrError(f"Attacks expect a batch of images [N, C, H, W]; got shape {tuple(x.shape)}.")
    y = y.reshape(-1).to(device=x.device, dtype=torch.long)
    if y.shape[0] != x.shape[0]:
        raise ZsrError(f"{x.shape[0]} images but {y.shape[0]} labels.")
    x = x.detach().to(torch.float32).contiguous().clone()  # clone: also leaves inference mode behind
    return x, y


def finish(
    model: Any, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Project ``x_adv`` on the ε-ball ∩ [0,1] (recording any violation), cast it back, judge misclassification."""
    notes = []
    x_adv = x_adv.detach().to(torch.float32)
    proj = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    excess = float((proj - x_adv).abs().max()) if x_adv.numel() else 0.0
    if excess > 1e-7:
        notes.append(f"the attack returned points outside the ε-ball or [0,1] (by up to {excess:.3g}); projected")
    x_adv = proj.to(dtype)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return x_adv, pred != y, notes
