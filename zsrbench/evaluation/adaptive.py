"""How a run attacks a test-time defense: adaptively (the default) or non-adaptively (as the papers did).

A defense that declares test-time steps (:class:`~zsrbench.defenses.test_time.TestTime`) is attacked through its
whole defended classifier: BPDA through every declared non-differentiable step, and, for a randomised one, EOT
over its draws (``pgd``/``cw``: ``eot`` defaults to the declaration's ``eot_draws``; the official AutoAttack's
``aa-rand`` averages 20 draws per APGD step). ``--non-adaptive`` measures the number the test-time papers report:
the attack sees the bare classifier, and the defended classifier judges the adversarial images. That number is an
experiment (a variant of the protocol, its own leaderboard entry, never ranked), labelled
:data:`NON_ADAPTIVE_LABEL`. For a defense that declares nothing, both modes are the plain attack: the run says so
and records nothing else.
"""

from __future__ import annotations

from typing import Any, Sequence

from zsrbench.attacks.base import AttackSpec
from zsrbench.defenses.test_time import TestTime, declared
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.table_model import NON_ADAPTIVE

MODES = ("adaptive", "non-adaptive")
ADAPTIVE_LABEL = "adaptive (BPDA through the declared steps, EOT over the defense's draws)"
NON_ADAPTIVE_LABEL = "non-adaptive (as published): the bare model attacked, the defended model judging"
VARIANT = NON_ADAPTIVE  # the variant name of a non-adaptive run (its entry: …__variant-non-adaptive)


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise ZsrError(f"Unknown attack mode '{mode}'; use --adaptive (the default for a test-time defense) or "
                       "--non-adaptive (the bare model attacked, as test-time papers report).")


def resolve_mode(mode: str | None, defense_cls: Any) -> tuple[str | None, str | None]:
    """(the mode the run uses — None for a defense that declares no test-time steps —, a note to say or None)."""
    check_mode(mode)
    decl = declared(defense_cls)
    if decl is None:
        if mode is None:
            return None, None
        return None, (f"defense '{defense_cls.name}' declares no test-time steps: the {mode} attack equals the plain "
                      "one (the same per-sample flags); nothing else is recorded")
    return mode or "adaptive", None


def eot_defaults(specs: Sequence[AttackSpec], decl: TestTime | None, mode: str | None) -> dict[str, dict[str, Any]]:
    """The attack parameters an adaptive run on a randomised defense uses by default (the protocol's standard
    evaluation of that defense, so not a variant): ``eot`` = the declaration's draws for attacks that have it."""
    if decl is None or mode != "adaptive" or not decl.randomised:
        return {}
    return {s.name: {"eot": int(decl.eot_draws)} for s in specs if "eot" in s.defaults}


def apply_eot(params: dict[str, dict[str, Any]], defaults: dict[str, dict[str, Any]],
              given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``params`` with ``defaults`` applied where the user did not set the value (``--eot``, ``--set eot=…`` or
    ``--set ATTACK.eot=…``)."""
    out = {name: dict(p) for name, p in params.items()}
    for name, values in defaults.items():
        for key, value in values.items():
            if given.get(key) is None and given.get(f"{name}.{key}") is None:
                out[name][key] = value
    return out


def mode_record(decl: TestTime | None, mode: str | None) -> dict[str, Any] | None:
    """What records keep: the mode, its label and the declaration it rests on (None without test-time steps)."""
    if decl is None or mode is None:
        return None
    return {"mode": mode, "label": ADAPTIVE_LABEL if mode == "adaptive" else NON_ADAPTIVE_LABEL,
            "test_time": decl.as_record()}
