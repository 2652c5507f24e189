"""The attack interface: a registered spec with its declared parameters, and the output every attack returns.

An attack declares its parameters in :class:`AttackSpec`: ``defaults`` names them and gives each its default,
whose type (bool, int, float or str) is the parameter's type; ``help`` gives each a one-line description;
``per255``, ``choices``, ``positive``, ``non_negative`` and ``zero_ok`` say what a valid value is. The same
declaration serves every attack, built-in or plugin: ``zsrbench run --set KEY=VALUE`` reads a value by the
parameter's type (:meth:`AttackSpec.parse`), :meth:`AttackSpec.config` checks it, and the result record stores
the attack's full, expanded parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import math
from numbers import Integral, Real

import torch
from torch import nn

from zsrbench.eps import eps_text  # noqa: F401  (``1.0 -> "1/255"``; part of this module's API)
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

# the parameters `zsrbench run` has an option of their own for (`--steps 5`); every other one is `--set KEY=VALUE`
OWN_OPTIONS = ("step", "steps", "restarts", "eot", "kappa", "criterion")
PARAM_TYPES = (bool, int, float, str)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class AttackParam:
    """One declared parameter of an attack, as :meth:`AttackSpec.parameters` lists it."""

    name: str
    type: type  # bool, int, float or str: the type of the default
    default: Any
    help: str = ""
    per255: bool = False  # given in units of 1/255, converted to pixel units before the attack is called
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """``steps (int, default 100): PGD iterations``."""
        kind = (self.type.__name__ if self.type in PARAM_TYPES else "any") + (", units of 1/255" if self.per255 else "")
        if self.choices:
            kind += ", one of " + "|".join(self.choices)
        return f"{self.name} ({kind}, default {self.default!r})" + (f": {self.help}" if self.help else "")


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the function, its declared parameters and a one-line description.

    ``defaults`` declares the parameters (name -> default; the default's type is the parameter's type) and
    ``help`` describes each in one line.
    """

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
    help: dict[str, str] = field(default_factory=dict)  # parameter -> one line shown in errors and docs

    def __post_init__(self) -> None:
        stray = sorted((set(self.help) | set(self.choices)) - set(self.defaults))
        if stray:
            raise ZsrError(f"Attack '{self.name}' describes parameter(s) {', '.join(stray)} in help/choices that its "
                           f"defaults do not declare; its parameters are: {', '.join(sorted(self.defaults)) or '(none)'}.")

    # declared parameters ----------------------------------------------------------------------------
    def parameters(self) -> list[AttackParam]:
        """The declared parameters, in declaration order."""
        return [AttackParam(name=k, type=type(v), default=v, help=self.help.get(k, ""), per255=k in self.per255,
                            choices=self.choices.get(k)) for k, v in self.defaults.items()]

    def describe_parameters(self) -> str:
        """One line naming every parameter with its type, default and help (for errors and listings)."""
        return "; ".join(p.describe() for p in self.parameters()) or "(none)"

    def parse(self, key: str, text: str) -> Any:
        """``text`` (as written in ``--set KEY=VALUE``) read as parameter ``key``'s declared type.

        bool: true/false (yes/no, on/off, 1/0); int: a whole number; float: a number (a ``per255`` one also as
        ``4/255``, like ``--eps``); str: the text. Whether the value is in range is :meth:`config`'s check.
        """
        if key not in self.defaults:
            raise ZsrError(f"--set {key}={text}: attack '{self.name}' has no parameter {key}. Its parameters: "
                           f"{self.describe_parameters()}.")
        default, v = self.defaults[key], text.strip()
        if not isinstance(default, PARAM_TYPES):  # no declared type (e.g. a None default): the value as written
            return _literal(v)
        kind = "true or false" if isinstance(default, bool) else (
            "a whole number" if isinstance(default, int) else "a number" if isinstance(default, float) else "text")
        try:
            if isinstance(default, bool):
                if v.lower() in _TRUE + _FALSE:
                    return v.lower() in _TRUE
                raise ValueError(v)
            if isinstance(default, int):
                return int(v)
            if isinstance(default, float):
                if key in self.per255:
                    from zsrbench.eps import parse_eps

                    return parse_eps(v, f"--set {key}")
                return float(v)
        except (ValueError, ZsrError) as exc:
            detail = f" ({exc})" if isinstance(exc, ZsrError) else ""
            raise ZsrError(f"--set {key}={text}: parameter {key} of attack '{self.name}' is {kind}, and {text!r} is "
                           f"not one{detail}. Its parameters: {self.describe_parameters()}.") from None
        return v

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The fully expanded hyper-parameters (defaults with overrides applied), in 1/255 units."""
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in self.defaults)
        if unknown:
            raise ZsrError(
                f"Attack '{self.name}' has no parameter {', '.join(unknown)}; "
                f"its parameters are: {self.describe_parameters()}."
            )
        cfg = dict(self.defaults)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        for key, value in cfg.items():
            problem = self.param_problem(key, value)
            if problem:
                label = f"--{key}" if key in OWN_OPTIONS else f"Parameter {key} (--set {key}=VALUE)"
                raise ZsrError(f"{label} {problem} for attack '{self.name}'; got {value!r}. Pass a valid value or "
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


def _literal(text: str) -> Any:
    """A value without a declared type: none/null, true/false, an int, a float, else the text itself."""
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def validate_eps(eps: float) -> float:
    if not (eps > 0 and eps <= 255):
        raise ZsrError(
            f"ε must be in (0, 255] in units of 1/255 (e.g. --eps 1 for 1/255, --eps 4 for 4/255); got {eps}."
        )
    return float(eps)
