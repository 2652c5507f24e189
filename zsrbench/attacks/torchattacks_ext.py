"""Optional extra ``zsrbench[torchattacks]``: torchattacks' L∞ attacks as ``ta:<Name>`` (e.g. ``--attack ta:FGSM``).

Third-party code, for exploration only: these are torchattacks' implementations with torchattacks' default
hyper-parameters, **not** the configurations of the papers zsrbench reproduces (use ``pgd``, ``cw``,
``autoattack``, ``aa-lite``, ``aa-fare`` for those). Every spec has ``family="torchattacks"`` and says so in its
description; ``info`` records the torchattacks version and the parameters used.

torchattacks is imported lazily, only when a ``ta:`` attack is resolved: zsrbench works without it.
:func:`resolve_torchattacks` turns ``"ta:FGSM"`` into an :class:`AttackSpec` built from the class's constructor
signature (its keyword defaults become the spec's ``defaults``; a step size ``alpha`` is given in units of 1/255
like zsrbench's ``step``). Only attacks whose docstring declares ``Distance Measure : Linf`` are offered
(zsrbench evaluates L∞ robustness); attacks that take a ``norm`` get ``norm="Linf"``, ones that take a ``seed``
get the run's seed, ones that take ``n_classes`` get the model's number of classes unless given. The global RNG
is seeded with the run's seed (and restored afterwards) so seeded runs repeat. ``x_adv`` is projected on the
ε-ball ∩ [0,1] (a violation is recorded) and ``success`` is recomputed from one forward pass.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
from typing import Any

import torch
from torch import nn

from zsrbench.attacks.base import AttackOutput, AttackSpec
from zsrbench.errors import ZsrError

PREFIX = "ta:"
INSTALL_HINT = "install the optional extra: pip install 'zsrbench[torchattacks]'"
#: constructor parameters zsrbench sets itself (not user parameters)
RESERVED = ("model", "eps", "norm", "seed")
#: parameters given in units of 1/255 on the command line
PER255 = ("alpha",)
_LINF = re.compile(r"Distance Measure\s*:\s*([^\n]*)")


def _import_torchattacks() -> Any:
    try:
        return importlib.import_module("torchattacks")
    except ImportError as exc:
        raise ZsrError(
            f"The 'ta:' attacks come from the third-party package torchattacks, which is not installed: "
            f"{INSTALL_HINT}."
        ) from exc


def is_available() -> bool:
    """Whether torchattacks can be imported (without raising)."""
    try:
        _import_torchattacks()
    except ZsrError:
        return False
    return True


def _is_linf(cls: type) -> bool:
    m = _LINF.search(inspect.getdoc(cls) or "")
    return bool(m) and "Linf" in m.group(1)


def _attack_classes(ta: Any) -> dict[str, type]:
    base = getattr(getattr(ta, "attack", None), "Attack", None)
    wrappers = set(getattr(ta, "__wrapper__", ()))
    out = {}
    for name in getattr(ta, "__all__", dir(ta)):
        obj = getattr(ta, name, None)
        if not inspect.isclass(obj) or name in wrappers:
            continue
        if base is not None and not issubclass(obj, base):
            continue
        out[name] = obj
    return out


def _takes_eps(cls: type) -> bool:
    return "eps" in inspect.signature(cls.__init__).parameters


def _usable(cls: type) -> bool:
    return _is_linf(cls) and _takes_eps(cls)


def available_names() -> list[str]:
    """The ``ta:`` names on offer (empty when torchattacks is not installed), for ``zsrbench list attacks``."""
    if not is_available():
        return []
    ta = _import_torchattacks()
    return sorted(PREFIX + n for n, c in _attack_classes(ta).items() if _usable(c))


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.name in RESERVED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = None if p.default is p.empty else p.default
        if p.name == "n_classes":
            value = None  # None: the model's number of classes, read from one forward pass
        if p.name in PER255 and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = round(float(value) * 255.0, 6)
        out[p.name] = value
    return out


def _run(
    cls: type, ta_version: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, /, *, eps: float,
    seed: int = 0, **params: Any,
) -> AttackOutput:
    with torch.inference_mode(False):
        return _run_checked(cls, ta_version, model, x, y, eps=eps, seed=seed, **params)


def _run_checked(
    cls: type, ta_version: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, /, *, eps: float,
    seed: int = 0, **params: Any,
) -> AttackOutput:
    from zsrbench.attacks.harness import attack_mode, check_inputs, finish, num_classes, preserved_rng

    dtype, device = x.dtype, x.device
    x, y = check_inputs(x, y)
    sig = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in params.items() if v is not None}
    missing = [k for k, v in params.items() if v is None and sig[k].default is inspect.Parameter.empty]
    if missing:
        raise ZsrError(f"ta:{cls.__name__} needs the parameter(s) {', '.join(missing)}.")
    if "norm" in sig:
        kwargs["norm"] = "Linf"
    if "seed" in sig:
        kwargs["seed"] = int(seed)
    with attack_mode(model):
        if "n_classes" in sig and "n_classes" not in kwargs:
            kwargs["n_classes"] = num_classes(model, x)
        atk = cls(model, eps=eps, **kwargs)
        if hasattr(atk, "set_device"):
            atk.set_device(device)
        with preserved_rng(device), torch.enable_grad():
            torch.manual_seed(int(seed))
            if device.type == "cuda":
                torch.cuda.manual_seed(int(seed))
            try:
                x_ta = atk(x, y)
            except (ZsrError, torch.OutOfMemoryError):
                raise
            except Exception as exc:  # third-party code: say where it failed, keep the traceback chained
                raise ZsrError(
                    f"ta:{cls.__name__} (third-party torchattacks {ta_version}) failed on this problem "
                    f"({x.shape[0]} images, {num_classes(model, x)} classes): {type(exc).__name__}: {exc}"
                ) from exc
        x_adv, success, notes = finish(model, x, y, x_ta, eps, dtype)
    info = {
        "implementation": f"torchattacks {ta_version} {cls.__name__} (third-party, not the paper configuration)",
        "torchattacks_version": ta_version,
        "attack_class": cls.__name__,
        "norm": "Linf",
        "seed": int(seed),
        "params": {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))},  # pixel units
        "notes": notes,
    }
    return AttackOutput(x_adv=x_adv, success=success, info=info)


def resolve_torchattacks(name: str) -> AttackSpec:
    """The :class:`AttackSpec` of ``ta:<Name>`` (``<Name>`` as in torchattacks, case-insensitive).

    Raises :class:`ZsrError` when torchattacks is not installed ("install zsrbench[torchattacks]"), when it has
    no such attack (with the closest names) and when the attack is not an L∞ attack.
    """
    raw = name.strip()
    short = raw[len(PREFIX):] if raw.lower().startswith(PREFIX) else raw
    ta = _import_torchattacks()
    version = str(getattr(ta, "__version__", "unknown"))
    classes = _attack_classes(ta)
    by_lower = {n.lower(): n for n in classes}
    key = by_lower.get(short.lower())
    if key is None:
        linf = sorted(n for n, c in classes.items() if _usable(c))
        close = difflib.get_close_matches(short, linf, n=1, cutoff=0.5)
        hint = f" Did you mean '{PREFIX}{close[0]}'?" if close else ""
        raise ZsrError(
            f"torchattacks {version} has no attack '{short}'.{hint} "
            f"Its L∞ attacks: {', '.join(PREFIX + n for n in linf)}."
        )
    cls = classes[key]
    if not _is_linf(cls):
        raise ZsrError(
            f"ta:{key} is not an L∞ attack (torchattacks documents it as "
            f"'{(_LINF.search(inspect.getdoc(cls) or '') or [None, 'unknown'])[1].strip()}'); "
            "zsrbench evaluates L∞ robustness."
        )
    if not _takes_eps(cls):
        raise ZsrError(f"ta:{key} takes no 'eps' parameter, so zsrbench cannot give it the ε of the evaluation.")
    defaults = _defaults(cls)
    return AttackSpec(
        name=PREFIX + key,
        fn=functools.partial(_run, cls, version),
        description=f"third-party torchattacks {version} {key} (L∞, torchattacks defaults; "
        "not the paper configuration)",
        defaults=defaults,
        family="torchattacks",
        per255=tuple(k for k in PER255 if k in defaults),
        zero_ok=tuple(k for k, v in defaults.items() if isinstance(v, int) and not isinstance(v, bool)),
    )
