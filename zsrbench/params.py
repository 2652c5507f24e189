"""Declared parameters: the typed, validated settings an attack or a defense exposes to ``--set KEY=VALUE``.

A declaration (:class:`Params`) names each parameter with its default, whose type (bool, int, float or str) is
the parameter's type; ``help`` gives each a one-line description; ``per255``, ``choices``, ``positive``,
``non_negative`` and ``zero_ok`` say what a valid value is. The same declaration serves attacks
(:class:`zsrbench.attacks.base.AttackSpec`) and the inference-time parameters of defenses
(:attr:`zsrbench.defenses.base.Defense.inference_params`): :meth:`Params.parse` reads a command-line value by
the declared type, :meth:`Params.config` checks every value and returns the full, expanded settings a result
records. ``owner`` in the methods is how messages name the declaring object (``attack 'pgd'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Callable

from zsrbench.errors import ZsrError

PARAM_TYPES = (bool, int, float, str)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Param:
    """One declared parameter, as :meth:`Params.parameters` lists it."""

    name: str
    type: type  # bool, int, float or str: the type of the default
    default: Any
    help: str = ""
    per255: bool = False  # given in units of 1/255, converted to pixel units before use
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """``steps (int, default 100): PGD iterations``."""
        kind = (self.type.__name__ if self.type in PARAM_TYPES else "any") + (", units of 1/255" if self.per255 else "")
        if self.choices:
            kind += ", one of " + "|".join(self.choices)
        return f"{self.name} ({kind}, default {self.default!r})" + (f": {self.help}" if self.help else "")


@dataclass(frozen=True)
class Params:
    """A declaration of parameters (see the module docstring)."""

    defaults: dict[str, Any] = field(default_factory=dict)
    help: dict[str, str] = field(default_factory=dict)
    per255: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    positive: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    zero_ok: tuple[str, ...] = ()
    at_most: dict[str, float] = field(default_factory=dict)  # a number parameter's largest valid value

    def stray(self) -> list[str]:
        """Names described in ``help``/``choices`` that ``defaults`` does not declare."""
        return sorted((set(self.help) | set(self.choices)) - set(self.defaults))

    def __bool__(self) -> bool:
        return bool(self.defaults)

    def parameters(self) -> list[Param]:
        """The declared parameters, in declaration order."""
        return [Param(name=k, type=type(v), default=v, help=self.help.get(k, ""), per255=k in self.per255,
                      choices=self.choices.get(k)) for k, v in self.defaults.items()]

    def describe(self) -> str:
        """One line naming every parameter with its type, default and help (for errors and listings)."""
        return "; ".join(p.describe() for p in self.parameters()) or "(none)"

    def parse(self, key: str, text: str, *, owner: str, setting: str) -> Any:
        """``text`` (as written in ``--set SETTING=TEXT``) read as parameter ``key``'s declared type.

        bool: true/false (yes/no, on/off, 1/0); int: a whole number; float: a number (a ``per255`` one also as
        ``4/255``, like ``--eps``); str: the text. Whether the value is in range is :meth:`config`'s check.
        """
        if key not in self.defaults:
            raise ZsrError(f"--set {setting}={text}: {owner} has no parameter {key}. Its parameters: "
                           f"{self.describe()}.")
        default, v = self.defaults[key], text.strip()
        if not isinstance(default, PARAM_TYPES):  # no declared type (e.g. a None default): the value as written
            return literal(v)
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

                    return parse_eps(v, f"--set {setting}")
                return float(v)
        except (ValueError, ZsrError) as exc:
            detail = f" ({exc})" if isinstance(exc, ZsrError) else ""
            raise ZsrError(f"--set {setting}={text}: parameter {key} of {owner} is {kind}, and {text!r} is not "
                           f"one{detail}. Its parameters: {self.describe()}.") from None
        return v

    def config(self, overrides: dict[str, Any], *, owner: str, label: Callable[[str], str]) -> dict[str, Any]:
        """The full settings: defaults with the (non-None) ``overrides`` applied, every value checked.

        ``label(key)`` is how an error names the option that sets ``key`` (``--steps``, ``Parameter x (--set
        x=VALUE)``). Integer parameters are returned as ``int`` (2.0 -> 2: a record says what ran).
        """
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in self.defaults)
        if unknown:
            raise ZsrError(f"{owner[0].upper()}{owner[1:]} has no parameter {', '.join(unknown)}; its parameters "
                           f"are: {self.describe()}.")
        cfg = dict(self.defaults)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        for key, value in cfg.items():
            problem = self.problem(key, value)
            if problem:
                raise ZsrError(f"{label(key)} {problem} for {owner}; got {value!r}. Pass a valid value or leave it "
                               f"out for the default ({self.defaults[key]!r}).")
            if isinstance(self.defaults.get(key), Integral) and not isinstance(self.defaults[key], bool):
                cfg[key] = int(value)
        return cfg

    def problem(self, key: str, value: Any) -> str | None:
        """What is wrong with ``value`` for parameter ``key`` (None: it is valid)."""
        problem = self._problem(key, value)
        if problem is None and key in self.at_most and value > self.at_most[key]:
            return f"must be at most {self.at_most[key]:g}"
        return problem

    def _problem(self, key: str, value: Any) -> str | None:
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


def literal(text: str) -> Any:
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
