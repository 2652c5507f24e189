"""What `zsrbench list` shows: every registered entry with one line of description and its origin."""

from __future__ import annotations

from typing import Any

from zsrbench.registry import ATTACKS, DATASETS, DEFENSES, PROTOCOLS, Registry, describe, load_builtins


def _registry(what: str) -> Registry[Any]:
    return {"defenses": DEFENSES, "attacks": ATTACKS, "datasets": DATASETS, "protocols": PROTOCOLS}[what]


def describe_entries(what: str) -> list[dict[str, str]]:
    load_builtins()
    reg = _registry(what)
    rows = []
    for name in reg.names():
        obj = reg.get(name)
        origin = reg.origin(name)
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

