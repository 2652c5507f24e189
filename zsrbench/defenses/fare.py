"""FARE (Schlarmann et al., ICML 2024): unsupervised adversarial fine-tuning of the embedding (spec §4).

``L = mean_i ‖φ_θ(x'_i) − φ_θ0(x_i)‖²₂`` on unnormalised embeddings; the inner attack maximises the same loss
with RobustVLM's momentum-sign PGD (μ 0.9, 10 steps, step 1/255, ε 2/255 or 4/255, model in eval mode).
AdamW lr 1e-5, wd 1e-4, batch 128, 20k steps, warm-up 1400, cosine, fp32. No text needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zsrbench.defenses.base import Adversary, Defense, LossOutput, TrainHparams, as_batch, embed
from zsrbench.registry import DEFENSES


def fare_loss(emb_adv: torch.Tensor, emb_clean_frozen: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance summed over the embedding dimension, mean over the batch."""
    return ((emb_adv.float() - emb_clean_frozen.float()) ** 2).sum(dim=1).mean()


@dataclass(frozen=True)
class FAREHparams(TrainHparams):
    optimizer: str = "adamw"
    lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = 20000
    warmup_steps: int = 1400
    drop_last: bool = True  # RobustVLM's DataLoader(drop_last=True)
    precision: str = "fp32"
    train_input: str = "resize-crop"  # open_clip preprocessing without Normalize (RobustVLM)
    eps: float = 2.0  # FARE² (use 4.0 for FARE⁴)
    attack_step: float = 1.0
    attack_steps: int = 10
    attack_momentum: float = 0.9
    template: str | None = "This is a photo of a {}"  # only for logging accuracy; the loss uses no text


@DEFENSES.register("fare")
class FARE(Defense):
    name = "fare"
    paper = "Schlarmann et al., Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision Embeddings, ICML 2024"
    description = "unsupervised: keep the adversarial embedding close to the original clean embedding (L2²)"
    default_hparams = FAREHparams()
    trainable = True
    quirks = {
        "eps": "2/255 (FARE²) by default; 4/255 gives FARE⁴",
        "attack": "RobustVLM pgd: v <- sign(0.9 v + sign(g)), uniform start (clamped to [0,1] here; the original "
                  "takes its first gradient at the unclamped start)",
        "schedule": "warm-up 1400 + cosine evaluated before every step (the original sets step 0's lr to the base lr)",
    }

    def loss(self, batch: Any, model: Any, frozen: Any, adversary: Adversary) -> LossOutput:
        b = as_batch(batch)
        with torch.no_grad():
            target = embed(frozen, b.x).float()
        x_adv = adversary.perturb(model, b.x, lambda xa: fare_loss(embed(model, xa), target))
        emb_adv = embed(model, x_adv)
        total = fare_loss(emb_adv, target)
        cos = F.cosine_similarity(emb_adv.detach().float(), target, dim=1).mean()
        return LossOutput(total, {"l2sq": float(total.detach()), "cos_sim": float(cos)})
