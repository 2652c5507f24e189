"""The hyper-parameters every trained defense has (:class:`TrainHparams`, read by the training loop) and their
checks: the valid range of each number and the error message that names the option to fix it."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable

from zsrbench.errors import ZsrError

TECOA_TEMPLATE = "This is a photo of a {}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrainHparams:
    """Settings every trained defense has; the training loop reads only these (never a defense's name).

    Sizes of the adversary (``eps``, ``attack_step``) are in units of 1/255.
    """

    # optimisation
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 1e-5
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 128
    epochs: int | None = 10
    steps: int | None = None  # when set, the budget in optimiser steps (overrides epochs)
    warmup_steps: int = 1000  # linear warm-up lr*(s+1)/warmup, then cosine to 0 (the TeCoA/open_clip schedule)
    schedule: str = "cosine"  # "cosine" | "constant"
    drop_last: bool = False
    precision: str = "amp"  # "amp" (bf16 autocast on CUDA), "amp-fp16" (fp16 + GradScaler), "fp32"; CPU: fp32
    # training adversary (spec §1; FARE overrides)
    attack: str = "pgd"  # "pgd" (sign / momentum-sign L∞ PGD on the defense's objective) | "none"
    eps: float = 1.0
    attack_step: float = 1.0
    attack_steps: int = 2
    attack_momentum: float = 0.0  # 0: plain sign-PGD; >0: RobustVLM momentum rule v <- sign(μv + sign(g))
    attack_random_start: bool = True
    # how training images reach the model (builders holding tensors, e.g. synthetic, ignore it):
    #  "resize256-crop": Resize(S·256/224, bilinear) + CenterCrop(S), S = input size (TeCoA/PMG-AFT/TGA-ZSR code)
    #  "resize-crop":    Resize(S, bicubic) + CenterCrop(S) (open_clip preprocessing; FARE)
    #  "dataset":        the dataset's own evaluation handling (e.g. Tiny-ImageNet native 64 px, upsampled inside)
    train_input: str = "resize256-crop"
    # the classifier used during training
    template: str | None = TECOA_TEMPLATE  # None: the training set's own prompts (info.prompts())
    train_logit_scale: float = 100.0
    train_normalization: str = "clip"  # "clip" | "imagenet" (PMG-AFT's original code)

    def validate(self) -> None:
        """Every choice is a known one and every number finite and in its range (checked before anything is
        built or written)."""
        choices = (("optimizer", ("sgd", "adamw")), ("schedule", ("cosine", "constant")),
                   ("precision", ("amp", "amp-fp16", "fp32")), ("attack", ("pgd", "none")),
                   ("train_input", ("resize256-crop", "resize-crop", "dataset")),
                   ("train_normalization", ("clip", "imagenet")))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ZsrError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got "
                               f"{getattr(self, name)!r}; pass one of them with --set {name}=VALUE.")
        check_finite_numbers(self)
        for name, ok, rule in RANGES:
            value = getattr(self, name)
            if value is None and name in ("epochs", "steps"):  # one of the two budgets may be unset
                continue
            if value is None or not ok(value):
                raise out_of_range(name, value, rule)
        if self.steps is None and self.epochs is None:
            raise ZsrError("Set a training budget: --epochs N or --steps N (N >= 1).")
        if not all(0 <= b < 1 for b in self.adam_betas) or len(self.adam_betas) != 2:
            raise out_of_range("adam_betas", self.adam_betas, "two numbers in [0, 1), e.g. 0.9,0.999")
        if self.attack == "pgd" and not (self.eps > 0 and self.attack_step > 0 and self.attack_steps >= 1):
            raise ZsrError(f"The training attack needs eps > 0, attack_step > 0 and attack_steps >= 1 (got "
                           f"{self.eps}, {self.attack_step}, {self.attack_steps}); set them, or --set attack=none.")

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) to use in training instead of the model's own, or None for the model's (CLIP)."""
        return (IMAGENET_MEAN, IMAGENET_STD) if self.train_normalization == "imagenet" else None


# (name, valid?, the rule in words) for TrainHparams' numbers; None (where allowed) is not checked
RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("lr", lambda v: v > 0, "> 0 (e.g. 1e-5)"),
    ("momentum", lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0.9)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("epochs", lambda v: v >= 1, "an integer >= 1"),
    ("steps", lambda v: v >= 1, "an integer >= 1"),
    ("warmup_steps", lambda v: v >= 0, "an integer >= 0"),
    ("eps", lambda v: 0 <= v <= 255, "in [0, 255] (units of 1/255, e.g. 1 or 4)"),
    ("attack_step", lambda v: 0 <= v <= 255, "in [0, 255] (units of 1/255, e.g. 1)"),
    ("attack_steps", lambda v: v >= 0, "an integer >= 0"),
    ("attack_momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train_logit_scale", lambda v: v > 0, "> 0 (e.g. 100)"),
)


TRAIN_OPTIONS = ("lr", "eps", "steps", "epochs", "batch_size")  # hyper-parameters `zsrbench train` has options for


def out_of_range(name: str, value: Any, rule: str) -> ZsrError:
    how = f"--{name.replace('_', '-')} VALUE" if name in TRAIN_OPTIONS else f"--set {name}=VALUE"
    return ZsrError(f"Hyper-parameter {name} must be {rule}, got {value!r}. Pass a valid value ({how}).")


def check_finite_numbers(hp: Any) -> None:
    """Every float hyper-parameter (also inside tuples) of the dataclass ``hp`` is finite: NaN or inf would
    silently train nonsense (NaN compares false with every bound)."""
    for f in fields(hp):
        value = getattr(hp, f.name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise out_of_range(f.name, value, "a finite number")
