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

import torch
from torch import nn

from zsrbench.eps import eps_text  # noqa: F401  (``1.0 -> "1/255"``; part of this module's API)
from zsrbench.errors import ZsrError
from zsrbench.params import Param, Params


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
AttackParam = Param  # one declared parameter of an attack, as :meth:`AttackSpec.parameters` lists it


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the function, its declared parameters and a one-line description.

    ``defaults`` declares the parameters (name -> default; the default's type is the parameter's type) and
    ``help`` describes each in one line (see :mod:`zsrbench.params`, which checks and parses them).
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
        stray = self.declared().stray()
        if stray:
            raise ZsrError(f"Attack '{self.name}' describes parameter(s) {', '.join(stray)} in help/choices that its "
                           f"defaults do not declare; its parameters are: {', '.join(sorted(self.defaults)) or '(none)'}.")

    # declared parameters ----------------------------------------------------------------------------
    def declared(self) -> Params:
        """The attack's parameters as a :class:`~zsrbench.params.Params` declaration."""
        return Params(defaults=self.defaults, help=self.help, per255=self.per255, choices=self.choices,
                      positive=self.positive, non_negative=self.non_negative, zero_ok=self.zero_ok)

    @property
    def _owner(self) -> str:
        return f"attack '{self.name}'"

    def parameters(self) -> list[AttackParam]:
        """The declared parameters, in declaration order."""
        return self.declared().parameters()

    def describe_parameters(self) -> str:
        """One line naming every parameter with its type, default and help (for errors and listings)."""
        return self.declared().describe()

    def parse(self, key: str, text: str) -> Any:
        """``text`` (as written in ``--set KEY=VALUE``) read as parameter ``key``'s declared type
        (:meth:`zsrbench.params.Params.parse`); whether the value is in range is :meth:`config`'s check."""
        return self.declared().parse(key, text, owner=self._owner, setting=key)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The fully expanded hyper-parameters (defaults with overrides applied), in 1/255 units."""
        return self.declared().config(overrides, owner=self._owner, label=_option_label)

    def param_problem(self, key: str, value: Any) -> str | None:
        """What is wrong with ``value`` for parameter ``key`` (None: it is valid)."""
        return self.declared().problem(key, value)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int, **cfg: Any
    ) -> AttackOutput:
        """Run on one batch. ``eps`` and the ``per255`` parameters of ``cfg`` are in units of 1/255."""
        params = {k: (v / 255.0 if k in self.per255 else v) for k, v in cfg.items()}
        return self.fn(model, x, y, eps=eps / 255.0, seed=seed, **params)


def _option_label(key: str) -> str:
    return f"--{key}" if key in OWN_OPTIONS else f"Parameter {key} (--set {key}=VALUE)"


def validate_eps(eps: float) -> float:
    if not (eps > 0 and eps <= 255):
        raise ZsrError(
            f"ε must be in (0, 255] in units of 1/255 (e.g. --eps 1 for 1/255, --eps 4 for 4/255); got {eps}."
        )
    return float(eps)
