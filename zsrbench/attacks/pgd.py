"""L∞ sign-PGD with a cross-entropy or CW-margin loss: the `pgd` and `cw` attacks of these papers.

Pure functions of tensors: the model maps images in [0,1] to logits; nothing here touches datasets or files.
Parameter gradients never accumulate: gradients are taken with respect to the input only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.attacks.base import AttackOutput

CRITERIA = ("last", "any")


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (the quantity PGD ascends)."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample ``-ReLU(z_y - max_{j≠y} z_j + κ)``: ascending it pushes the true-class margin below -κ."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return -F.relu(z_y - others.amax(dim=1) + kappa)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L∞ ball of radius ``eps`` around ``x`` intersected with the image box [0,1]."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform start in [-ε, ε] around ``x``, clamped to the image box."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    seed: int = 0,
    step: float = 1.0 / 255,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    kappa: float = 50.0,
    criterion: str = "last",
    random_init: bool = True,
) -> AttackOutput:
    """Untargeted L∞ sign-PGD (all sizes in pixel units).

    ``criterion="last"`` judges the last iterate (as the papers do); ``"any"`` counts a sample as broken at
    the first misclassified iterate, keeps that iterate and stops attacking it (a stronger, valid attack).
    Restarts attack only the samples that are still unbroken.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    if loss not in ("ce", "cw"):
        raise ValueError("loss must be 'ce' or 'cw'")
    x = x.detach()
    gen = _generator(x.device, seed)
    x_best = x.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def objective(logits: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        return ce_loss(logits, yy) if loss == "ce" else cw_margin_loss(logits, yy, kappa)

    for _ in range(max(1, int(restarts))):
        todo = (~success).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        x0, yy = x[todo], y[todo]
        xa = random_start(x0, eps, gen) if random_init else x0.clone()
        active = torch.arange(todo.numel(), device=x.device)  # rows of xa still attacked
        for _ in range(int(steps)):
            xi = xa[active].requires_grad_(True)
            with torch.enable_grad():
                logits = model(xi)
                grad = torch.autograd.grad(objective(logits, yy[active]).sum(), xi)[0]
            if criterion == "any":
                broken = logits.detach().argmax(1) != yy[active]
                if broken.any():  # keep the misclassified iterate, stop attacking it
                    rows = active[broken]
                    success[todo[rows]] = True
                    x_best[todo[rows]] = xa[rows]
                    active, grad, xi = active[~broken], grad[~broken], xi[~broken]
                    if active.numel() == 0:
                        break
            xa[active] = project(xi.detach() + step * grad.sign(), x0[active], eps)
        if active.numel() == 0:
            continue
        with torch.no_grad():
            pred = model(xa[active]).argmax(1)
        x_best[todo[active]] = xa[active]
        success[todo[active[pred != yy[active]]]] = True
    return AttackOutput(x_adv=x_best, success=success, info={"criterion": criterion})


def cw_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> AttackOutput:
    """PGD on the CW margin loss (κ = 50 by default): the "CW" of the zero-shot robustness papers."""
    kw.setdefault("loss", "cw")
    return pgd_attack(model, x, y, **kw)
