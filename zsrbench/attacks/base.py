"""The attack interface: a registered spec with defaults, and the output every attack returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import math
from numbers import Integral, Real

import torch
from torch import nn

from zsrbench.errors import ZsrError


@dataclass
class AttackOutput:
    """Adversarial images and which samples the attack broke.

    ``success[i]`` is True when the attack found an input inside the ε-ball that the model misclassifies
    (under the recorded success criterion). ``info`` carries adjustments and warnings to record.
    """

    x_adv: torch.Tensor
    success: torch.Tensor  # bool [B]
    info: dict[str, Any] = field(default_factory=dict)


# fn(model, x, y, *, eps, seed, **params) -> AttackOutput, with eps in pixel units ([0,1] scale)
AttackFn = Callable[..., AttackOutput]


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the function, its documented defaults and a one-line description."""

    name: str
    fn: AttackFn
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    family: str = "zsrbench"  # "zsrbench", "autoattack" (official code), "torchattacks" (optional extra)
    # parameters given in units of 1/255 on the command line (converted to pixel units before the call)
    per255: tuple[str, ...] = ("step",)
    # what a valid value is, beyond its type (the type of its default): a string parameter's allowed values, the
    # real parameters that must be > 0 or >= 0; integer parameters must be >= 1 unless listed in ``zero_ok``
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    zero_ok: tuple[str, ...] = ()

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The fully expanded hyper-parameters (defaults with overrides applied), in 1/255 units."""
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in self.defaults)
        if unknown:
            raise ZsrError(
                f"Attack '{self.name}' has no parameter {', '.join(unknown)}; "
                f"its parameters are: {', '.join(sorted(self.defaults)) or '(none)'}."
            )
        cfg = dict(self.defaults)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        for key, value in cfg.items():
            problem = self.param_problem(key, value)
            if problem:
                raise ZsrError(f"--{key} {problem} for attack '{self.name}'; got {value!r}. Pass a valid value or "
                               f"leave it out for the default ({self.defaults[key]!r}).")
            if isinstance(self.defaults.get(key), Integral) and not isinstance(self.defaults[key], bool):
                cfg[key] = int(value)  # 2.0 -> 2: the record says what ran, in the parameter's own type
        return cfg

    def param_problem(self, key: str, value: Any) -> str | None:
        """What is wrong with ``value`` for parameter ``key`` (None: it is valid)."""
        default = self.defaults.get(key)
        if isinstance(default, bool):
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(default, Integral):
            least = 0 if key in self.zero_ok else 1
            whole = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value) and value == int(value)
            return None if whole and value >= least else f"must be a whole number ≥ {least}"
        if isinstance(default, Real):
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                return "must be a finite number"
            if key in self.positive and not value > 0:
                return "must be positive"
            if key in self.non_negative and value < 0:
                return "must not be negative"
            return None
        if isinstance(default, str):
            if not isinstance(value, str):
                return "must be text"
            allowed = self.choices.get(key)
            return None if allowed is None or value in allowed else f"must be one of {', '.join(allowed)}"
        return None

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int, **cfg: Any
    ) -> AttackOutput:
        """Run on one batch. ``eps`` and the ``per255`` parameters of ``cfg`` are in units of 1/255."""
        params = {k: (v / 255.0 if k in self.per255 else v) for k, v in cfg.items()}
        return self.fn(model, x, y, eps=eps / 255.0, seed=seed, **params)


def validate_eps(eps: float) -> float:
    if not (eps > 0 and eps <= 255):
        raise ZsrError(
            f"ε must be in (0, 255] in units of 1/255 (e.g. --eps 1 for 1/255, --eps 4 for 4/255); got {eps}."
        )
    return float(eps)


def eps_text(eps: float) -> str:
    """``1.0 -> "1/255"``, ``0.5 -> "0.5/255"``."""
    return f"{eps:g}/255"
