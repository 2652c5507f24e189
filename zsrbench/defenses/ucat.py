"""UCAT (ICML 2026, arXiv 2512.12997): TeCoA plus aligning Dirichlet distributions of the predictions (spec §9).

With ``c`` the cosine similarities of an image to the class prompts (the logits divided by the logit scale):

``L = CE(s·c_θ(x'), y) + λ · mean_b KL(Dir(α_adv) ‖ Dir(α_ori))``, ``α = 1e-6 + exp((c + 1)/τ)``,

``α_adv`` from the fine-tuned model on the adversarial images (with gradient), ``α_ori`` from the frozen model on
the clean images (no gradient), ``λ = t / exp(softplus(2/τ))`` (t = 1e5, τ = 0.07: λ ≈ 3.905e-8). The Dirichlet
KL is taken in closed form (lgamma/digamma) in float64 whatever the input dtype: α reaches ~1e8 for typical
cosines (~2.6e12 at c = 1), where float16 overflows and float32 loses the difference of the log-normalisers.
Training is the TGA-ZSR recipe (§5) with batch 256; the training adversary is §1's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zsrbench.defenses.base import Adversary, Defense, LossOutput, TrainHparams, as_batch, same_kernels
from zsrbench.errors import ZsrError
from zsrbench.registry import DEFENSES

ALPHA_FLOOR = 1e-6  # added to every concentration: α > 0 even where exp((c + 1)/τ) underflows


def dirichlet_kl(alpha_p: torch.Tensor, alpha_q: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(Dir(α_p) ‖ Dir(α_q))`` for concentrations [B, C] → [B], in float64 (whatever the inputs' dtype).

    ``lgamma(Σα_p) − Σ lgamma(α_p) − lgamma(Σα_q) + Σ lgamma(α_q) + Σ (α_p − α_q)(ψ(α_p) − ψ(Σα_p))``; each
    distribution's log-normaliser is computed on its own, so ``KL(α ‖ α)`` is exactly 0.
    """
    with torch.autocast(alpha_p.device.type, enabled=False):
        p, q = alpha_p.double(), alpha_q.double()
        p0, q0 = p.sum(dim=-1), q.sum(dim=-1)
        log_norm_p = torch.lgamma(p0) - torch.lgamma(p).sum(dim=-1)
        log_norm_q = torch.lgamma(q0) - torch.lgamma(q).sum(dim=-1)
        cross = ((p - q) * (torch.digamma(p) - torch.digamma(p0).unsqueeze(-1))).sum(dim=-1)
        return log_norm_p - log_norm_q + cross


def ucat_alpha(cos: torch.Tensor, tau: float) -> torch.Tensor:
    """Dirichlet concentrations from cosine similarities: ``1e-6 + exp((cos + 1)/τ)``, in float64."""
    return ALPHA_FLOOR + torch.exp((cos.double() + 1.0) / tau)


def ucat_lambda(t: float, tau: float) -> float:
    """``λ = t / exp(softplus(2/τ))`` (softplus in a form that does not overflow)."""
    z = 2.0 / tau
    softplus = z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))
    return t * math.exp(-softplus)


def ucat_loss(
    cos_adv: torch.Tensor,
    cos_ori: torch.Tensor,
    y: torch.Tensor,
    *,
    logit_scale: float = 100.0,
    t: float = 1e5,
    tau: float = 0.07,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``CE(s·cos_adv, y) + λ · mean_b KL(Dir(α(cos_adv)) ‖ Dir(α(cos_ori)))``; ``cos_ori`` is detached.

    ``cos_adv``: [B, C] cosines of the fine-tuned model on the adversarial images; ``cos_ori``: of the frozen model
    on the clean images. The total is float32 (the KL is computed in float64 and cast back).
    """
    ce = F.cross_entropy(logit_scale * cos_adv.float(), y)
    kl = dirichlet_kl(ucat_alpha(cos_adv, tau), ucat_alpha(cos_ori.detach(), tau)).mean()
    lam = ucat_lambda(t, tau)
    total = ce + (lam * kl).float()
    return total, {"ce": float(ce.detach()), "dirichlet_kl": float(kl.detach())}


@dataclass(frozen=True)
class UCATHparams(TrainHparams):
    """The TGA-ZSR recipe with UCAT's batch: Tiny-ImageNet, SGD lr 1e-4, momentum 0.9, wd 0, batch 256, 10 epochs,
    1000-step warm-up then cosine, AMP; §1 adversary (PGD-2, ε = step = 1/255, CE over all training classes);
    template "This is a photo of a {}". ``t`` and ``tau`` set λ and the concentrations."""

    lr: float = 1e-4
    batch_size: int = 256
    epochs: int | None = 10
    t: float = 1e5  # λ = t / exp(softplus(2/τ))
    tau: float = 0.07  # temperature of the concentrations α = 1e-6 + exp((c + 1)/τ)

    def validate(self) -> None:
        super().validate()
        if not (self.tau > 0 and self.t >= 0):
            raise ZsrError(f"UCAT needs tau > 0 and t >= 0 (got tau={self.tau}, t={self.t}); "
                           "pass them with --set tau=VALUE / --set t=VALUE.")


@DEFENSES.register("ucat")
class UCAT(Defense):
    name = "ucat"
    paper = "Calibrating Uncertainty for Zero-Shot Adversarial CLIP (UCAT), ICML 2026, arXiv 2512.12997"
    description = "TeCoA + KL between Dirichlet distributions of adversarial (fine-tuned) and clean (frozen) cosines"
    default_hparams = UCATHparams()
    trainable = True
    quirks = {
        "lambda": "λ = t / exp(softplus(2/τ)) with t = 1e5, τ = 0.07 (≈ 3.905e-8); both are hyper-parameters",
        "concentrations": "α = 1e-6 + exp((c + 1)/τ) from cosines c = logits / logit scale; α_ori from the frozen "
                          "model on clean images, without gradient",
        "kl_precision": "closed-form Dirichlet KL (lgamma/digamma) in float64 whatever the autocast dtype (α ~ 1e8)",
        "model_selection": "final weights kept",
    }
    notes = (
        "The official code (VivienLu/UCAT) cannot run as published: it imports modules that are not in its "
        "repository (neither is used by the loss). zsrbench implements the loss as the paper states it.",
        "The paper's 'AutoAttack' is APGD-CE + APGD-DLR (zsrbench's aa-lite), not the standard AutoAttack suite.",
        "No UCAT checkpoints are released: evaluating UCAT means training it (zsrbench train --defense ucat).",
    )

    def loss(self, batch: Any, model: Any, frozen: Any, adversary: Adversary) -> LossOutput:
        with same_kernels():  # the frozen copy computes with the same kernels (KL exactly 0 at θ = θ0, x' = x)
            b = as_batch(batch)
            hp = self.hp
            x_adv = adversary(model, b.x, b.y)
            logits_adv = model(x_adv)
            with torch.no_grad():
                cos_ori = frozen(b.x) / frozen.logit_scale
            total, terms = ucat_loss(logits_adv / model.logit_scale, cos_ori, b.y, logit_scale=model.logit_scale,
                                     t=hp.t, tau=hp.tau)
        terms["robust_acc"] = float((logits_adv.detach().argmax(1) == b.y).float().mean())
        return LossOutput(total, terms)
