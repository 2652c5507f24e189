"""The optimiser and its per-step learning rate: linear warm-up ``lr·(s+1)/warmup`` then cosine to 0, as
TeCoA/open_clip (or constant), set before every step and saved in checkpoints."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


def lr_at(step: int, *, base_lr: float, warmup: int, total: int, schedule: str = "cosine") -> float:
    """TeCoA/open_clip ``cosine_lr``: ``base·(s+1)/warmup`` for s < warmup, then ``½(1+cos(π·e/es))·base``."""
    if schedule == "constant":
        return base_lr
    if step < warmup:
        return base_lr * (step + 1) / warmup
    e, es = step - warmup, total - warmup
    if es <= 0:
        return base_lr
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr


class WarmupCosine:
    """The per-step learning-rate schedule as a tiny stateful object (saved in checkpoints)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, base_lr: float, warmup: int, total: int, schedule: str) -> None:
        self.optimizer, self.base_lr, self.warmup, self.total, self.schedule = optimizer, base_lr, warmup, total, schedule
        self.last_step = -1

    def set(self, step: int) -> float:
        lr = lr_at(step, base_lr=self.base_lr, warmup=self.warmup, total=self.total, schedule=self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_step = step
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "warmup": self.warmup, "total": self.total, "schedule": self.schedule,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr, self.warmup, self.total = state["base_lr"], state["warmup"], state["total"]
        self.schedule, self.last_step = state["schedule"], state["last_step"]


@dataclass
class Optimisation:
    """What changes the trained weights: the optimiser, its schedule, the fp16 GradScaler (CUDA AMP only) and the
    training adversary with its own seeded generator."""

    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosine
    scaler: Any
    adv_gen: torch.Generator
    adversary: Any


def optimisation(job: Any, built: Any) -> Optimisation:
    """SGD or AdamW over the visual encoder's parameters, the warm-up/cosine schedule over ``built.total`` steps,
    and the defense's training adversary (random starts from its own generator, seeded from the run's seed)."""
    hp, dev = job.hp, job.dev
    params = [p for p in built.visual.parameters() if p.requires_grad]
    if hp.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay,
                                                             betas=tuple(hp.adam_betas))
    else:
        optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    scheduler = WarmupCosine(optimizer, base_lr=hp.lr, warmup=int(hp.warmup_steps), total=built.total,
                             schedule=hp.schedule)
    scaler = torch.amp.GradScaler("cuda") if job.use_scaler else None
    adv_gen = torch.Generator(device=dev).manual_seed(int(job.seed) + 7919)
    return Optimisation(optimizer, scheduler, scaler, adv_gen, job.defense.make_adversary(dev, adv_gen))
