"""Model identity: which model a result is of, and which code made its predictions.

A model id is ``<defense>/<architecture>/<12 hex>``. The hex is the canonical digest of the model's tensors
(:meth:`~zsrbench.models.CLIPParts.tensors_sha256`: equal tensors, one id) for a defense that only loads weights;
for a defense that acts at inference (:meth:`~zsrbench.defenses.base.Defense.acts_at_inference`: declared
inference parameters, a wrapped classifier, its own loading) it is the digest of the tensors *and* of the
defense's name and inference settings, so that a change of either is another model. The code that ran around the
weights is named by the defense's provenance (built-in, plugin distribution and version, or the module that
registered it); an audit vouches for one provenance
(:func:`zsrbench.leaderboard.entries.code_key`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from zsrbench.models.clip import CLIPParts


def identity_digest(tensors_sha256: str, inference: dict[str, Any] | None) -> str:
    """The hex digest a model id shortens: the tensors' digest, or for a defense acting at inference the sha256 of
    the canonical JSON of ``{"tensors": ..., "defense": ..., "params": ...}``."""
    if inference is None:
        return tensors_sha256
    blob = json.dumps({"tensors": tensors_sha256, **inference}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def model_id(defense: Any, parts: CLIPParts) -> str:
    """``<defense>/<architecture>/<first 12 hex of the identity digest>`` (see the module docstring).

    ``defense`` is the defense instance (or, for a defense that only loads weights, its name). A trained folder is
    named by the architecture it was trained from (its manifest's ``base_architecture``).
    """
    name = defense if isinstance(defense, str) else defense.name
    inference = None if isinstance(defense, str) else defense.inference_identity()
    return f"{name}/{parts.base_name()}/{identity_digest(parts.tensors_sha256(), inference)[:12]}"


def provenance(defense: Any) -> dict[str, str]:
    """Where ``defense``'s code comes from (:meth:`zsrbench.registry.Entry.provenance`)."""
    from zsrbench.errors import ZsrError
    from zsrbench.registry import DEFENSES

    try:
        entry = DEFENSES.entry(defense.name)
    except ZsrError:
        entry = None
    here = f"{type(defense).__module__}:{type(defense).__qualname__}"
    if entry is None or entry.resolve() is not type(defense):
        return {"kind": "code", "module": here}
    found = entry.provenance()
    return {**found, "module": here} if found["kind"] == "code" else found
