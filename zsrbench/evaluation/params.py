"""An attack suite's parameters: checking the suite, the protocol's defaults merged with the user's, and reading
``--set`` items by the declared types of the suite's attacks and of the defense."""

from __future__ import annotations

from typing import Any, Sequence

from zsrbench.attacks.base import AttackSpec
from zsrbench.errors import ZsrError
from zsrbench.protocols import Protocol
from zsrbench.registry import ATTACKS, DEFENSES, load_builtins


def check_suite(attacks: Sequence[str]) -> list[AttackSpec]:
    """The specs of a suite's attacks, each named once."""
    if not attacks:
        raise ZsrError("No attack given: pass --attack NAME or a comma-separated suite such as pgd,cw "
                       "(see `zsrbench list attacks`).")
    specs = [ATTACKS.get(a) for a in attacks]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ZsrError(f"The attack suite {'+'.join(attacks)} names {', '.join(twice)} more than once; a suite lists "
                       "each attack once (the robust accuracy is the worst case over them).")
    return specs


def attack_params(attacks: Sequence[str], given: dict[str, Any], protocol: Protocol,
                  specs: Sequence[AttackSpec]) -> dict[str, dict[str, Any]]:
    """Each attack's full parameters: the protocol's defaults, then the user's; each value checked.

    A key ``KEY`` of ``given`` (a run's ``attack_params``) sets that parameter of every attack of the suite that declares it
    (``--steps 5``); a key ``ATTACK.KEY`` sets it for that attack only (``--set noise.tries=3``) and wins over
    a plain ``KEY``.
    """
    flat = {k: v for k, v in given.items() if v is not None and "." not in k}
    scoped = _scoped_params(attacks, given, specs)
    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        given = {k: v for k, v in flat.items() if k in spec.defaults}
        merged = {**protocol.attack_defaults.get(spec.name, {}), **given}
        base = {k: v for k, v in merged.items() if k in spec.defaults}
        params[spec.name] = spec.config(**{**base, **scoped.get(spec.name, {})})
    unknown = [k for k in flat if not any(k in s.defaults for s in specs)]
    if unknown:
        raise ZsrError(f"The attack suite {'+'.join(attacks)} takes no parameter {', '.join(unknown)}. "
                       f"{suite_parameters(specs)}")
    return params


def _norm_attack(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _suite_names(attacks: Sequence[str], specs: Sequence[AttackSpec]) -> dict[str, AttackSpec]:
    """Every spelling of the suite's attacks (as given, and canonical) -> its spec."""
    out = {_norm_attack(s.name): s for s in specs}
    out.update({_norm_attack(a): s for a, s in zip(attacks, specs)})
    return out


def _scoped_params(attacks: Sequence[str], given: dict[str, Any],
                   specs: Sequence[AttackSpec]) -> dict[str, dict[str, Any]]:
    """The ``ATTACK.KEY`` entries of ``given``, by the attack's canonical name."""
    names = _suite_names(attacks, specs)
    out: dict[str, dict[str, Any]] = {}
    for key, value in given.items():
        if value is None or "." not in key:
            continue
        attack, _, param = key.rpartition(".")
        spec = _suite_attack(attack, names, attacks, specs, f"Attack parameter {key}")
        out.setdefault(spec.name, {})[param] = value
    return out


def _suite_attack(attack: str, names: dict[str, AttackSpec], attacks: Sequence[str], specs: Sequence[AttackSpec],
                  what: str, defense: Any = None) -> AttackSpec:
    """The suite's attack that ``attack`` (of an ``ATTACK.KEY`` parameter) names; ``what`` is how the error says
    where the name came from."""
    spec = names.get(_norm_attack(attack))
    if spec is None:
        also = f" or the defense ({defense.name})" if defense is not None else ""
        raise ZsrError(f"{what} names attack '{attack}', which is not in the suite {'+'.join(attacks)}; name one of "
                       f"its attacks ({', '.join(s.name for s in specs)}){also} or leave the attack out (KEY=VALUE "
                       "sets every attack of the suite that has KEY).")
    return spec


def suite_parameters(specs: Sequence[AttackSpec]) -> str:
    """A sentence naming the parameters of each attack of a suite and how to set them."""
    listed = " | ".join(f"{s.name}: {s.describe_parameters()}" for s in specs)
    return (f"The parameters of the suite's attacks are {listed}. Set one with --set KEY=VALUE (every attack that "
            "has KEY), or --set ATTACK.KEY=VALUE for one attack of a suite.")


def parse_attack_sets(attacks: Sequence[str], items: Sequence[str],
                      given: dict[str, Any] | None = None) -> dict[str, Any]:
    """``zsrbench run --set`` items read by the declared types of the suite's attacks (see :func:`parse_sets`)."""
    return parse_sets(attacks, items, given)[0]


def parse_sets(attacks: Sequence[str], items: Sequence[str], given: dict[str, Any] | None = None,
               defense: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``zsrbench run --set`` items read by the declared types of the suite's attacks and of the defense.

    ``KEY=VALUE`` sets KEY for every attack of ``attacks`` that declares it (or, when no attack has KEY, the
    defense's inference parameter KEY), ``ATTACK.KEY=VALUE`` for that one attack, ``DEFENSE.KEY=VALUE`` the
    defense's. Returns (``attack_params`` entries ``{"ATTACK.KEY": value}``, the defense's ``{KEY: value}``).
    ``given`` holds the attack parameters already set by their own options (``--steps`` ...): setting one of them
    again with a plain ``--set`` is refused, as is setting one key twice, a key nobody has, and a value not of
    the parameter's type.
    """
    load_builtins()
    specs = check_suite(attacks)
    names = _suite_names(attacks, specs)
    dcls = DEFENSES.get(defense) if defense is not None else None
    given = {k: v for k, v in (given or {}).items() if v is not None}
    out: dict[str, Any] = {}
    mine: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ZsrError(f"--set expects KEY=VALUE (an attack parameter, e.g. --set steps=10, ATTACK.KEY=VALUE "
                           f"for one attack of a suite, or DEFENSE.KEY=VALUE for the defense); got {item!r}.")
        attack, _, param = key.rpartition(".")
        param = param.replace("-", "_")
        if dcls is not None and (_norm_attack(attack) == _norm_attack(dcls.name) or (
                not attack and param in dcls.inference_params.defaults and not any(param in s.defaults for s in specs))):
            if param in mine:
                raise ZsrError(f"--set gives {param} of defense '{dcls.name}' twice; pass each parameter once.")
            mine[param] = dcls.inference_params.parse(param, text, owner=f"defense '{dcls.name}'", setting=key)
            continue
        if attack:
            targets = [_suite_attack(attack, names, attacks, specs, f"--set {item}", dcls)]
        else:
            targets = [s for s in specs if param in s.defaults]
            if not targets:
                raise ZsrError(f"--set {item}: no attack of the suite {'+'.join(attacks)} has a parameter {param}"
                               f"{_defense_has(dcls)}. {suite_parameters(specs)}")
            if dcls is not None and param in dcls.inference_params.defaults:
                raise ZsrError(f"--set {item}: {param} is a parameter of the attack(s) "
                               f"{', '.join(s.name for s in targets)} and of defense '{dcls.name}'; name which with "
                               f"--set ATTACK.{param}=VALUE or --set {dcls.name}.{param}=VALUE.")
            if param in given:
                raise ZsrError(f"--set {item} and --{param} {given[param]} both set {param}; pass one of them (or "
                               f"--set ATTACK.{param}=VALUE to change it for one attack of the suite).")
        for spec in targets:
            name = f"{spec.name}.{param}"
            if name in out:
                raise ZsrError(f"--set gives {param} of attack '{spec.name}' twice; pass each parameter once.")
            out[name] = spec.parse(param, text)
    return out, mine


def _defense_has(dcls: Any) -> str:
    """`` (nor has defense 'x': its parameters are …)`` for an error about an unknown ``--set`` key."""
    if dcls is None:
        return ""
    return (f", nor has defense '{dcls.name}' (its inference parameters: {dcls.inference_params.describe()}; set "
            f"them with --set {dcls.name}.KEY=VALUE)")
