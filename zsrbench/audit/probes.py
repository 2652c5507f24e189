"""Evaluation-validity checks: does a robustness number measure the model, or the attack's failure?

The checks follow the practice of Carlini et al., *On Evaluating Adversarial Robustness* (2019), Tramèr et al.,
*On Adaptive Attacks to Adversarial Example Defenses* (2020) and AutoAttack's own flags. Each one is measured on
a seeded subset of a protocol's test sets (``zsrbench.audit.runner`` loads the models and data) and judged by
the fixed rules below; nothing here changes a measurement.

==================  ===========================================================================================
check               measured on the clean-correct samples of each dataset, judged per dataset
==================  ===========================================================================================
``gradient_health`` fraction whose input gradient of the CE loss is exactly zero or non-finite
                    (warn > 1 %, fail > 10 %): quantised inputs, saturated logits, non-differentiable layers
``randomness``      repeated forward passes of the same inputs agree; otherwise the model is *randomised*
                    (warn; its attacks must use EOT and the audit's own attacks switch EOT on)
``eps_behaviour``   PGD robust accuracy along an ε sweep never rises (by more than 2 points + 1 sample), and at
                    a large ε (64/255) falls to chance (+5 points + 1.96 binomial SE) or below
``convergence``     PGD with twice the steps, and PGD with restarts, lower robust accuracy by ≤ 3 points
                    (warn), ≤ 6 (else fail)
``fgsm_vs_pgd``     single-step FGSM does not beat iterative PGD: FGSM robust accuracy ≥ PGD's − 2 points
                    (else fail); samples FGSM breaks and PGD does not are listed (warn when > 1 %)
``black_box``       Square (gradient-free) and uniform noise at ε break ≤ 2 % of the samples PGD left robust
                    (warn ≤ 10 %, else fail); each such sample is listed
``transfer``        PGD on the protocol's undefended base model, transferred, breaks ≤ 3 % of the samples PGD
                    left robust (warn ≤ 10 %, else fail); each such sample is listed
``autoattack_flags`` AutoAttack's own warnings recorded in the model's leaderboard results at this ε (warn)
``nonfinite``       NaN/inf logits, clean or under any attack of the audit or the recorded results (fail)
==================  ===========================================================================================

The verdicts (per dataset, ``n/a`` where a check had nothing to look at, one sample of slack, tolerances widened
by a randomised model's own prediction noise) are :mod:`zsrbench.audit.verdicts`; this module measures.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------------------------------ measurements
def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """``fn`` over batches of (x, y), concatenated."""
    outs = [fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.bool)


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).float() for i in range(0, x.shape[0], batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, finite mask): a sample with a NaN/inf logit predicts class -1 (never correct)."""
    z = logits_of(model, x, batch_size)
    finite = torch.isfinite(z).all(1)
    pred = torch.where(finite, z.nan_to_num(0.0).argmax(1), torch.full_like(finite, -1, dtype=torch.long))
    return pred, finite


def gradient_status(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (input gradient of the CE loss is exactly zero, it is non-finite)."""
    zero, bad = [], []
    for i in range(0, x.shape[0], batch_size):
        xi = x[i:i + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xi).float(), y[i:i + batch_size], reduction="sum")
            g = torch.autograd.grad(loss, xi, allow_unused=True)[0]
        if g is None:
            g = torch.zeros_like(xi)
        flat = g.detach().flatten(1)
        finite = torch.isfinite(flat).all(1)
        bad.append((~finite).cpu().numpy())
        zero.append((finite & (flat.abs().amax(1) == 0)).cpu().numpy())
    if not zero:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    return np.concatenate(zero), np.concatenate(bad)


def repeat_disagreement(model: nn.Module, x: torch.Tensor, batch_size: int, passes: int = 3) -> tuple[float, float]:
    """(max relative |Δlogit| between repeated passes, fraction of samples whose prediction changes)."""
    runs = [logits_of(model, x, batch_size) for _ in range(passes)]
    scale = max(float(runs[0].nan_to_num(0.0).abs().max()), 1e-12)
    diff = max(float((r - runs[0]).nan_to_num(0.0).abs().max()) for r in runs[1:]) / scale
    preds = torch.stack([r.nan_to_num(0.0).argmax(1) for r in runs])
    flips = float((preds != preds[0]).any(0).float().mean()) if x.shape[0] else 0.0
    return diff, flips


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ε from the clean image (no random start): the weakest white-box attack."""
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        g = torch.autograd.grad(F.cross_entropy(model(xi).float(), y, reduction="sum"), xi)[0]
    return (x + eps * g.sign()).clamp(0.0, 1.0).detach()


def uniform_noise(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, queries: int, seed: int) -> torch.Tensor:
    """The official Square attack (``pyautoattack``), L∞, margin loss, ``queries`` queries, schedule rescaled."""
    from pyautoattack.square import SquareAttack

    from zsrbench.attacks.harness import attack_mode, preserved_rng

    if x.shape[0] == 0:
        return x
    attack = SquareAttack(model, norm="Linf", n_queries=int(queries), eps=eps, p_init=0.8, n_restarts=1, seed=seed,
                          verbose=False, resc_schedule=True, device=x.device)
    with attack_mode(model), preserved_rng(x.device):
        return attack.perturb(x.float().contiguous(), y).detach().to(x.dtype)
