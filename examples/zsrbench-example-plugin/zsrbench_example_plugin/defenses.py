"""Two example defenses: one that acts around the classifier, one that fine-tunes the visual encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.defenses.base import Adversary, Defense, LossOutput, TrainHparams, as_batch
from zsrbench.errors import ZsrError


def box_blur(x: torch.Tensor) -> torch.Tensor:
    """Each channel of ``x`` (B×C×H×W in [0,1]) averaged over 3×3 neighbourhoods (edges replicated)."""
    c = x.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


class Blurred(nn.Module):
    """A classifier that blurs its input first: images in [0,1] -> logits, like the classifier it wraps."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf(box_blur(x))


class BlurCLIP(Defense):
    """CLIP behind a 3×3 box blur (a deliberately naive input transformation)."""

    name = "blur_clip"
    paper = "example plugin (not a published defense)"
    description = "example plugin: CLIP behind a 3x3 box blur"

    def wrap_classifier(self, clf: nn.Module) -> nn.Module:
        return Blurred(clf).eval()  # attacks see, and differentiate through, the blur


@dataclass(frozen=True)
class MixedATHparams(TrainHparams):
    """The shared training settings (optimiser, schedule, training adversary, ...) plus this defense's own."""

    clean_weight: float = 0.5  # weight of the clean-image cross-entropy; 1 - clean_weight for the adversarial one
    lr: float = 1e-5

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.clean_weight <= 1.0:
            raise ZsrError(f"clean_weight must be in [0, 1], got {self.clean_weight!r}; pass --set clean_weight=0.5.")


class MixedAT(Defense):
    """Adversarial fine-tuning on ``(1 - w)·CE(x_adv) + w·CE(x)``."""

    name = "mixed_at"
    paper = "example plugin (not a published defense)"
    description = "example plugin: fine-tuning on a mix of adversarial and clean cross-entropy"
    default_hparams = MixedATHparams()
    trainable = True

    def loss(self, batch: Any, model: Any, frozen: Any, adversary: Adversary) -> LossOutput:
        b = as_batch(batch)
        x_adv = adversary(model, b.x, b.y)  # the training attack, on the model being trained
        adv = F.cross_entropy(model(x_adv).float(), b.y)
        clean = F.cross_entropy(model(b.x).float(), b.y)
        w = self.hp.clean_weight
        total = (1 - w) * adv + w * clean
        return LossOutput(total, {"adv_ce": float(adv.detach()), "clean_ce": float(clean.detach())})
