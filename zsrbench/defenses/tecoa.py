"""TeCoA (Mao et al., ICLR 2023): adversarial fine-tuning of the visual encoder on text-guided CE (spec §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zsrbench.defenses.base import Adversary, Defense, LossOutput, TrainHparams, as_batch
from zsrbench.registry import DEFENSES


def tecoa_loss(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``CE(logits_θ(x'), y)``, mean over the batch (logits over all training classes)."""
    return F.cross_entropy(logits_adv.float(), y)


@dataclass(frozen=True)
class TeCoAHparams(TrainHparams):
    """The TGA-ZSR paper's TeCoA row: Tiny-ImageNet, lr 1e-5, batch 128, 10 epochs, SGD 0.9, wd 0, warm-up 1000.

    The original TeCoA run (ImageNet, batch 256) differs only in data and batch size: ``--batch-size 256``.
    """

    lr: float = 1e-5
    batch_size: int = 128
    epochs: int | None = 10


@DEFENSES.register("tecoa")
class TeCoA(Defense):
    name = "tecoa"
    paper = "Mao et al., Understanding Zero-Shot Adversarial Robustness for Large-Scale Models, ICLR 2023"
    description = "adversarial fine-tuning of the visual encoder with text-guided cross-entropy (PGD-2, eps 1/255)"
    default_hparams = TeCoAHparams()
    trainable = True
    quirks = {
        "template": "'This is a photo of a {}' for all training classes, as the original code (None: dataset prompts)",
        "model_selection": "final weights kept; the original selected model_best on test-set robust accuracy",
    }
    notes = (
        "The original attack back-propagates into the parameters' .grad after optimizer.zero_grad(), so the "
        "training attack's gradients are still in .grad at the update; under the fp16 GradScaler of AMP runs they "
        "are divided by the loss scale (≈65536), so their effect is small but not zero. zsrbench takes input "
        "gradients only.",
    )

    def loss(self, batch: Any, model: Any, frozen: Any, adversary: Adversary) -> LossOutput:
        b = as_batch(batch)
        x_adv = adversary(model, b.x, b.y)
        logits_adv = model(x_adv)
        total = tecoa_loss(logits_adv, b.y)
        acc = (logits_adv.detach().argmax(1) == b.y).float().mean()
        return LossOutput(total, {"ce": float(total.detach()), "robust_acc": float(acc)})
