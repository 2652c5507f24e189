"""What `zsrbench list` shows: every registered entry with one line of description and its origin."""

from __future__ import annotations

from typing import Any

from zsrbench.errors import ZsrError
from zsrbench.registry import ATTACKS, DATASETS, DEFENSES, PROTOCOLS, Registry, describe, load_builtins


def _registry(what: str) -> Registry[Any]:
    return {"defenses": DEFENSES, "attacks": ATTACKS, "datasets": DATASETS, "protocols": PROTOCOLS}[what]


def describe_entries(what: str) -> list[dict[str, str]]:
    load_builtins()
    reg = _registry(what)
    rows = []
    for name in reg.names():
        origin = reg.origin(name)
        try:
            obj = reg.get(name)
        except ZsrError as exc:  # a plugin entry that does not load: listed as broken, the others stay usable
            rows.append(broken_row(what, name, str(exc), origin))
            continue
        if what == "datasets":
            info = obj.info
            tmpl = info.fixed_prompts[0] + " …" if info.fixed_prompts else info.templates[0]
            rows.append({"name": name, "classes": str(info.num_classes), "split": info.split, "input": info.input_mode,
                         "template": tmpl, "origin": origin})
        elif what == "protocols":
            rows.append({"name": name, "version": str(obj.version), "datasets": str(len(obj.datasets)),
                         "eps": f"{obj.eps:g}/255", "description": obj.description, "origin": origin})
        elif what == "attacks":
            rows.append({"name": name, "family": getattr(obj, "family", ""), "description": describe(obj), "origin": origin})
        else:
            rows.append({"name": name, "description": describe(obj), "at inference": at_inference(obj),
                         "paper": getattr(obj, "paper", "") or "", "origin": origin})
    return rows


def at_inference(defense_cls: Any) -> str:
    """What a defense does at inference besides loading weights: its declared settings (``--set DEFENSE.KEY``),
    or that it wraps the classifier or loads its own way; ``weights only`` otherwise."""
    params = getattr(defense_cls, "inference_params", None)
    if params:
        return f"{params.describe()} (--set {defense_cls.name}.KEY=VALUE)"
    acts = getattr(defense_cls, "acts_at_inference", None)
    return "wraps the classifier or loads its own way (no settings)" if acts is not None and acts() else "weights only"


COLUMNS = {"datasets": ("name", "classes", "split", "input", "template", "origin"),
           "protocols": ("name", "version", "datasets", "eps", "description", "origin"),
           "attacks": ("name", "family", "description", "origin"),
           "defenses": ("name", "description", "at inference", "paper", "origin")}
SAYS = {"datasets": "template"}  # the column a broken entry's reason goes in (else "description")


def broken_row(what: str, name: str, message: str, origin: str) -> dict[str, str]:
    """The row of an entry that does not load: the columns of its kind, the reason where its description goes."""
    row = {c: "" for c in COLUMNS[what]}
    row.update({"name": name, "origin": origin, SAYS.get(what, "description"): f"BROKEN: {message}"})
    return row
