"""An example zsrbench plugin, declared through entry points in its pyproject.toml.

* ``blur_clip``: a (deliberately naive) input-transformation defense: CLIP that sees a 3×3 box-blurred image.
* ``noise``: a random-sign attack (one step to a corner of the ε-ball), a baseline any real attack must beat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.attacks.base import AttackOutput, AttackSpec
from zsrbench.defenses.base import Defense, LoadSpec
from zsrbench.models import CLIPParts


class _Blur(nn.Module):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.inner = visual
        self.image_size = visual.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        kernel = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype, device=x.device)
        return self.inner(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c))


class BlurCLIP(Defense):
    name = "blur_clip"
    paper = "example plugin (not a published defense)"
    description = "example plugin: CLIP behind a 3x3 box blur"

    def load(self, spec: LoadSpec, *, device: str = "cpu") -> CLIPParts:
        parts = super().load(spec, device=device)
        parts.model.visual = _Blur(parts.model.visual).to(device)
        parts.source.setdefault("notes", []).append("input blurred 3x3 by the example plugin")
        return parts


def _noise(model, x, y, *, eps, seed, **_):
    g = torch.Generator(device=x.device).manual_seed(seed)
    sign = torch.randint(0, 2, x.shape, generator=g, device=x.device).to(x.dtype) * 2 - 1
    x_adv = (x + eps * sign).clamp(0, 1)
    with torch.no_grad():
        success = model(x_adv).argmax(1) != y
    return AttackOutput(x_adv=x_adv, success=success, info={})


NOISE = AttackSpec(name="noise", fn=_noise, description="example plugin: random corner of the ε-ball", defaults={},
                   family="plugin", per255=())
