"""An example attack with one parameter: random corners of the ε-ball."""

from __future__ import annotations

import torch
from torch import nn

from zsrbench.attacks.base import AttackOutput, AttackSpec


def random_corners(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int,
                   tries: int) -> AttackOutput:
    """``tries`` random corners ``x + eps·s`` (``s`` a random sign per pixel); a sample is broken when one of
    them is misclassified, and ``x_adv`` holds the first such corner (else the last one tried)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    x_adv = x.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(tries):
        sign = torch.randint(0, 2, x.shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
        candidate = (x + eps * sign).clamp(0.0, 1.0)
        with torch.no_grad():
            wrong = model(candidate).argmax(1) != y
        take = ~success  # keep the first corner that broke a sample
        x_adv[take] = candidate[take]
        success |= wrong
    return AttackOutput(x_adv=x_adv, success=success, info={})


NOISE = AttackSpec(
    name="noise",
    fn=random_corners,
    description="example plugin: random corners of the ε-ball, a baseline any real attack must beat",
    defaults={"tries": 1},
    help={"tries": "random corners tried per image; broken if any is misclassified"},
    family="plugin",
    per255=(),
)
