"""L∞ sign-PGD with a cross-entropy or CW-margin loss: the `pgd` and `cw` attacks of these papers.

Pure functions of tensors: the model maps images in [0,1] to logits; nothing here touches datasets or files.
Parameter gradients never accumulate: gradients are taken with respect to the input only.

EOT (expectation over transformation) for randomised models
-----------------------------------------------------------
With ``eot = N > 1`` the ascent direction at each step is the sign of the *average* of the input gradients of
``N`` forward passes of the same iterate (one backward per pass, so only one graph is alive at a time); a
randomised model draws new randomness in every pass, from its own generator (typically torch's global one, which
the caller seeds: the attack neither seeds nor consumes it otherwise). ``eot = 1`` is exactly the plain PGD
computation (one pass, no averaging). For a deterministic model the N gradients are identical, so their average
has the same sign and EOT changes nothing but the cost (N× the forward/backward passes).

How success is judged (also for a randomised model):

* ``criterion="last"``: the final iterate is evaluated with **one** fresh forward pass, as without EOT (one draw of
  the model's randomness, like a clean evaluation).
* ``criterion="any"``: each iterate is judged by the **average of the logits of its N passes** (the same passes that
  gave the gradient, so no extra cost; with N = 1 the single pass, as without EOT): a sample counts as broken at
  the first iterate whose expected logits are misclassified, so one lucky draw among N does not count as a break.
  The final iterate (the one after the last step, which no gradient pass saw) is judged the same way, by the mean
  of N fresh passes.
"""

from __future__ import annotations

from typing import Callable

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


def eot_gradient(
    model: nn.Module,
    xi: torch.Tensor,
    y: torch.Tensor,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, ∇ₓ Σ objective)`` at ``xi`` (a leaf that requires grad), averaged over ``eot`` forward passes.

    ``eot = 1``: one pass, its logits and gradient as they are (plain PGD). ``eot = N > 1``: one forward and one
    backward per pass (one graph alive at a time); the mean gradient, and the mean of the N passes' logits (in
    float32), which is what ``criterion="any"`` judges.
    """
    with torch.enable_grad():
        logits = model(xi)
        grad = torch.autograd.grad(objective(logits, y).sum(), xi)[0]
    n = int(eot)
    if n > 1:
        logits = logits.detach().float()
        for _ in range(n - 1):
            with torch.enable_grad():
                more = model(xi)
                grad = grad + torch.autograd.grad(objective(more, y).sum(), xi)[0]
            logits = logits + more.detach().float()
        grad = grad / n
        logits = logits / n
    return logits, grad


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
    eot: int = 1,
) -> AttackOutput:
    """Untargeted L∞ sign-PGD (all sizes in pixel units).

    ``criterion="last"`` judges the last iterate (as the papers do); ``"any"`` counts a sample as broken at
    the first misclassified iterate, keeps that iterate and stops attacking it (a stronger, valid attack).
    Restarts attack only the samples that are still unbroken. ``eot = N > 1`` averages the input gradients of ``N``
    forward passes per step (for randomised models; see the module docstring for how success is judged then).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    if isinstance(eot, bool) or int(eot) != eot or int(eot) < 1:
        raise ValueError(f"eot must be an integer ≥ 1; got {eot!r}")
    n_eot = int(eot)
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
            logits, grad = eot_gradient(model, xi, yy[active], objective, n_eot)
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
            if criterion == "any" and n_eot > 1:  # judged like every other iterate: the mean of n_eot passes
                pred = sum(model(xa[active]).float() for _ in range(n_eot)).argmax(1)
            else:
                pred = model(xa[active]).argmax(1)
        x_best[todo[active]] = xa[active]
        success[todo[active[pred != yy[active]]]] = True
    return AttackOutput(x_adv=x_best, success=success, info={"criterion": criterion, "eot": n_eot})


def cw_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> AttackOutput:
    """PGD on the CW margin loss (κ = 50 by default): the "CW" of the zero-shot robustness papers."""
    kw.setdefault("loss", "cw")
    return pgd_attack(model, x, y, **kw)
