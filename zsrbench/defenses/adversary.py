"""The training adversary handed to :meth:`Defense.loss <zsrbench.defenses.base.Defense.loss>`: L∞ sign-PGD
(optionally with RobustVLM's momentum) on the defense's objective, computing no parameter gradient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F


def _set_requires_grad(module: torch.nn.Module, flags: list[bool] | bool) -> list[bool]:
    params = list(module.parameters())
    before = [p.requires_grad for p in params]
    for p, f in zip(params, flags if isinstance(flags, list) else [flags] * len(params)):
        p.requires_grad_(f)
    return before


@dataclass
class Adversary:
    """The training adversary: L∞ sign-PGD (optionally with RobustVLM's momentum) on an objective to maximise.

    ``perturb(model, x, objective)`` returns the last iterate; ``objective(x_adv)`` is a scalar to ascend.
    ``adversary(model, x, y)`` is spec §1: cross-entropy on ``model(x_adv)`` logits. The model is put in eval
    mode during the attack and its parameters do not require grad, so no parameter gradient is computed or
    accumulated (nothing can leak into the training step). Sizes are in pixel units ([0,1] images).

    ``reseed`` (None by default: a fresh random start for every attack) re-seeds ``generator`` with that seed
    before every attack, so attacks on batches of the same shape start from the same random point (a quirk of
    the official Comp-TGA code, which re-seeds the global RNG before every training attack).
    """

    eps: float
    step: float
    steps: int
    momentum: float = 0.0
    random_start: bool = True
    generator: torch.Generator | None = None
    enabled: bool = True
    reseed: int | None = None

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        from zsrbench.attacks.pgd import project, random_start

        x = x.detach()
        if not self.enabled:
            return x
        was_training = model.training
        flags = _set_requires_grad(model, False)
        model.eval()
        try:
            if self.random_start:
                gen = self.generator
                if gen is None or gen.device.type != x.device.type:
                    raise ValueError("the adversary's generator must live on the batch's device")
                if self.reseed is not None:
                    gen.manual_seed(int(self.reseed))
                xa = random_start(x, self.eps, gen)
            else:
                xa = x.clone()
            velocity = torch.zeros_like(x)
            for _ in range(int(self.steps)):
                xi = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = objective(xi)
                    grad = torch.autograd.grad(loss, xi)[0]
                grad = torch.nan_to_num(grad.float(), nan=0.0)
                # RobustVLM: v <- sign(μ v + sign(g)); μ = 0 is plain sign-PGD
                velocity = torch.sign(self.momentum * velocity + torch.sign(grad))
                xa = project(xi.detach() + self.step * velocity.to(xi.dtype), x, self.eps)
        finally:
            _set_requires_grad(model, flags)
            model.train(was_training)
        return xa.detach()

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(model, x, lambda xa: F.cross_entropy(model(xa).float(), y))

    def describe(self) -> dict[str, Any]:
        return {"eps": self.eps, "step": self.step, "steps": self.steps, "momentum": self.momentum,
                "random_start": self.random_start, "enabled": self.enabled, "reseed": self.reseed}
