"""``ttc-gate``: the gate-evasion attack on TTC (spec §11), registered here so that :mod:`zsrbench.attacks` knows
nothing of TTC.

TTC counterattacks only the images whose features barely move under random noise (``τ < τ_thr``); an adversarial
image that also moves them enough falls back to plain noise. The attack is L∞ sign-PGD (uniform random start, the
ε ball ∩ [0,1], last iterate) through the defended classifier, ascending

``CE(defended logits(x'), y) − λ · ReLU(τ_thr − τ(x'))``

with the gradients of ``eot`` draws of δ₀ averaged per step (EOT). The defended logits go through the
counterattack with BPDA (identity); τ, differentiable, is measured with the very δ₀ the defended pass drew (its
generator state is replayed). λ = 10 by default is zsrbench's choice: the gate term is then worth up to
10·τ_thr = 2 nats, about the cross-entropy of a sample at its decision boundary, and vanishes once τ ≥ τ_thr.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.attacks.base import AttackOutput, AttackSpec
from zsrbench.attacks.harness import attack_mode
from zsrbench.attacks.pgd import project, random_start
from zsrbench.defenses.test_time import TestTimeClassifier
from zsrbench.errors import ZsrError
from zsrbench.registry import ATTACKS

GATE_WEIGHT = 10.0  # λ (zsrbench's choice, see the module docstring)


def ttc_pipeline(model: Any) -> tuple[TestTimeClassifier, Any]:
    """(the TTC-defended classifier inside ``model``, its TTC defense); a :class:`ZsrError` when there is none."""
    from zsrbench.defenses.ttc import TTC

    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, TestTimeClassifier) and isinstance(getattr(m.procedure, "__self__", None), TTC):
                return m, m.procedure.__self__
    raise ZsrError("ttc-gate attacks TTC's gate; the model it was given is not defended by TTC (it needs "
                   f"--defense ttc, attacked adaptively; got {type(model).__name__}). Use pgd, cw or autoattack for "
                   "other defenses, or drop --non-adaptive.")


def gate_objective(logits: torch.Tensor, tau: torch.Tensor, y: torch.Tensor, tau_thr: float,
                   lam: float) -> torch.Tensor:
    """Per-sample ``CE(logits, y) − λ·ReLU(τ_thr − τ)`` (what the attack ascends)."""
    return F.cross_entropy(logits.float(), y, reduction="none") - lam * F.relu(tau_thr - tau.float())


def _pass(model: nn.Module, pipe: TestTimeClassifier, ttc: Any,
          xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(defended logits, τ) of ``xi`` for one draw of δ₀: the defended pass draws it, τ replays the draw."""
    state = pipe.generator.get_state()
    logits = model(xi)
    replay = torch.Generator(device=pipe.generator.device)
    replay.set_state(state)
    return logits, ttc.gate_tau(xi, pipe.clf, replay)


def ttc_gate_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
                    step: float = 1.0 / 255, steps: int = 100, eot: int = 10,
                    lam: float = GATE_WEIGHT) -> AttackOutput:
    """Gate-evasion PGD on a TTC-defended classifier (sizes in pixel units; see the module docstring). Success:
    the defended classifier misclassifies the final iterate (one forward pass, one draw)."""
    pipe, ttc = ttc_pipeline(model)
    x = x.detach()
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    thr, n = float(ttc.inference["tau_thr"]), max(1, int(eot))
    with attack_mode(model), torch.enable_grad():
        xa = random_start(x, eps, gen)
        for _ in range(int(steps)):
            grad = torch.zeros_like(xa)
            for _ in range(n):  # EOT: one graph alive at a time
                xi = xa.clone().requires_grad_(True)
                logits, tau = _pass(model, pipe, ttc, xi)
                grad += torch.autograd.grad(gate_objective(logits, tau, y, thr, lam).sum(), xi)[0]
            xa = project(xa + step * (grad / n).sign(), x, eps)
    with torch.no_grad():
        logits, tau = _pass(model, pipe, ttc, xa)
    info = {"eot": n, "lam": float(lam), "tau_thr": thr,
            "counterattacked_final": float((tau < thr).float().mean()) if tau.numel() else 0.0}
    return AttackOutput(x_adv=xa.detach(), success=logits.argmax(1) != y, info=info)


ATTACKS.add(
    "ttc-gate",
    AttackSpec(
        name="ttc-gate",
        fn=ttc_gate_attack,
        description="TTC gate evasion: sign-PGD on CE − λ·ReLU(τ_thr − τ) through the defended classifier (BPDA "
                    "through the counterattack, EOT over its noise), so that TTC falls back to noise; TTC only",
        defaults={"step": 1.0, "steps": 100, "eot": 10, "lam": GATE_WEIGHT},
        positive=("step",),
        non_negative=("lam",),
        help={"step": "size of each signed-gradient step", "steps": "iterations",
              "eot": "draws of TTC's noise whose gradients are averaged at each step",
              "lam": "λ, the weight of the gate term ReLU(τ_thr − τ) (zsrbench's choice: 10)"},
    ),
)
