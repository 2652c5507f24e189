"""Names on the site: the file of every page, and the readable label of every model.

Pages lie one folder below the site's root (``protocols/``, ``models/``, ``entries/``, ``figures/``), so every
page links to every other with ``../``. Models are named by their defense and architecture ("TeCoA ·
zsr-micro"); only when several models share that name is something added that tells them apart (their
pretrained weights or checkpoint, the protocols they were measured under, else a number): the hash of their
tensors stays in their model card, never in a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from zsrbench.leaderboard.entries import eps_part
from zsrbench.leaderboard.records import slug
from zsrbench.site.papers import defense_display

# protocol, protocol version, ε text, subset, variant (an experiment's settings; None: the standard evaluation)
PageKey = tuple[str, int, "str | None", "str | None", "str | None"]


def protocol_page(key: PageKey) -> str:
    name, version, eps_text, subset, variant = key
    tail = (f"-{slug(subset)}" if subset else "") + (f"-variant-{slug(variant)}" if variant else "")
    return f"protocols/{slug(name)}-v{version}-{eps_part(eps_text)}{tail}.html"


def page_title(key: PageKey, proxy: str | None = None) -> str:
    """``micro v3 · ε = 4/255``, with its subset, its experiment and (``proxy``) what the protocol is when it is
    not evidence about methods."""
    name, version, eps_text, subset, variant = key
    eps = f"ε = {eps_text}" if eps_text else "clean (no attack)"
    return (f"{name} v{version} · {eps}" + (f" · {subset} subset" if subset else "")
            + (f" · experiment: variant {variant}" if variant else "") + (f" — {proxy}" if proxy else ""))


def model_page(model_id: str) -> str:
    return f"models/{slug(model_id)}.html"


def entry_page(protocol: str, entry: str) -> str:
    return f"entries/{slug(protocol)}__{slug(entry)}.html"


def figure_file(protocol: str, entry: str) -> str:
    return f"figures/{slug(protocol)}__{slug(entry)}.png"


@dataclass(frozen=True)
class ModelFacts:
    """What a label may say about a model."""

    model_id: str
    defense: str | None
    architecture: str | None
    weights: str | None = None  # a pretrained tag or a checkpoint's short name
    measured_under: str | None = None  # e.g. "micro v3"
    first_seen: str = ""  # ISO time of its first measurement (orders "model 1", "model 2")


_HASHY = re.compile(r"[-_.]?[0-9a-f]{8,}$")


def weights_name(pretrained: str | None, checkpoint: str | None) -> str | None:
    """A short human name of the weights: the pretrained tag, else the checkpoint's last path part without a
    trailing hash (``cache:defenses/micro-v3/tecoa-s0-c99e964d4d7e`` -> ``tecoa-s0``)."""
    if pretrained:
        return pretrained
    if not checkpoint:
        return None
    last = re.split(r"[/\\:]", checkpoint.rstrip("/\\"))[-1]
    short = _HASHY.sub("", last)
    return short or None


def base_label(f: ModelFacts) -> str:
    if not f.defense and not f.architecture:
        return f.model_id
    parts = [defense_display(f.defense)] + ([f.architecture] if f.architecture else [])
    return " · ".join(parts)


def model_labels(facts: Sequence[ModelFacts]) -> dict[str, str]:
    """A distinct readable label for each model id (see the module docstring)."""
    by_base: dict[str, list[ModelFacts]] = {}
    for f in facts:
        by_base.setdefault(base_label(f), []).append(f)
    labels: dict[str, str] = {}
    for base, group in by_base.items():
        if len(group) == 1:
            labels[group[0].model_id] = base
            continue
        for attr in ("weights", "measured_under"):
            values = [getattr(f, attr) for f in group]
            if all(values) and len(set(values)) == len(values):
                labels.update({f.model_id: f"{base} · {getattr(f, attr)}" for f in group})
                break
        else:
            ordered = sorted(group, key=lambda f: (f.first_seen, f.model_id))
            labels.update({f.model_id: f"{base} · model {i}" for i, f in enumerate(ordered, 1)})
    return labels


def labels_for(ids: Sequence[str], facts: Mapping[str, ModelFacts]) -> dict[str, str]:
    """Labels distinct among ``ids`` only (a page names its own models as briefly as it can)."""
    return model_labels([facts[i] for i in dict.fromkeys(ids) if i in facts])
