"""Two example defenses: one that acts around the classifier, one that fine-tunes the visual encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.defenses.base import Adversary, Defense, LossOutput, TrainHparams, as_batch
from zsrbench.errors import ZsrError
from zsrbench.params import Params


def box_blur(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Each channel of ``x`` (B×C×H×W in [0,1]) averaged over size×size neighbourhoods (edges replicated)."""
    c, r = x.shape[1], size // 2
    kernel = torch.full((c, 1, size, size), 1 / size**2, dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel, groups=c)


class Blurred(nn.Module):
    """A classifier that blurs its input first: images in [0,1] -> logits, like the classifier it wraps."""

    def __init__(self, clf: nn.Module, size: int = 3) -> None:
        super().__init__()
        self.clf, self.size = clf, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf(box_blur(x, self.size))


class BlurCLIP(Defense):
    """CLIP behind a box blur (a deliberately naive input transformation)."""

    name = "blur_clip"
    paper = "example plugin (not a published defense)"
    description = "example plugin: CLIP behind a size x size box blur"
    notes = ("a deliberately naive input transformation, for the plugin guide; not a defense to rank",)
    # what it does at inference, declared: set with --set blur_clip.size=5, recorded, part of the model id
    inference_params = Params(defaults={"size": 3}, help={"size": "side of the box blur in pixels (odd)"})

    @classmethod
    def inference_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        cfg = super().inference_config(values)  # types and ranges of the declaration
        if cfg["size"] % 2 == 0:
            raise ZsrError(f"blur_clip.size must be odd (the blur is centred on each pixel); got {cfg['size']}. "
                           "Pass e.g. --set blur_clip.size=3.")
        return cfg

    def wrap_classifier(self, clf: nn.Module) -> nn.Module:
        return Blurred(clf, self.inference["size"]).eval()  # attacks see, and differentiate through, the blur


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
