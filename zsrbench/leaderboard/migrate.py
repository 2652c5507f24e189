"""Schema versions and the migration path for files written by older zsrbench versions.

Every file carries ``schema_version``. Reading a file migrates it in memory, one version at a time, through the
registered ``migrate`` functions (files on disk are never rewritten). A file from a newer zsrbench is refused
with a message that says to upgrade.

Version 0 of the result record is the draft format used before the schema existed (the format of other
leaderboards: numbers as percent strings, one attack, no schema_version)::

    {"model": {"name": ..., "defense": ..., "architecture": ..., "image_size": 224},
     "protocol": {"name": ..., "version": 1, "dataset": ..., "eps": "1/255", "attack": {"name": "pgd", ...}, ...},
     "metrics": {"n": 100, "num_classes": 10, "clean_acc": "81.00", "robust_acc": "45.00", "per_attack": {...}},
     ...}
"""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any, Callable

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.schema import ENTRY_SCHEMA_VERSION, SCHEMA_VERSION

Migration = Callable[[dict[str, Any]], dict[str, Any]]

# document kind -> {from_version: function returning the document at from_version + 1}
MIGRATIONS: dict[str, dict[int, Migration]] = {"record": {}, "entry": {}}
CURRENT: dict[str, int] = {"record": SCHEMA_VERSION, "entry": ENTRY_SCHEMA_VERSION}


def migration(document: str, from_version: int) -> Callable[[Migration], Migration]:
    """Register ``fn`` as the step from ``from_version`` to ``from_version + 1`` of ``document``."""

    def deco(fn: Migration) -> Migration:
        MIGRATIONS[document][from_version] = fn
        return fn

    return deco


def schema_version(data: Any) -> int:
    if not isinstance(data, dict):
        raise ZsrError("not a JSON object")
    v = data.get("schema_version", 0)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ZsrError(f"schema_version must be a non-negative integer; got {v!r}")
    return v


def migrate(data: dict[str, Any], document: str = "record") -> dict[str, Any]:
    """``data`` brought up to the current schema version of ``document`` ("record" or "entry")."""
    if document not in MIGRATIONS:
        raise ValueError(f"unknown document kind {document!r}")
    current = CURRENT[document]
    version = schema_version(data)
    if version > current:
        raise ZsrError(
            f"schema_version {version} was written by a newer zsrbench (this one reads {document}s up to version "
            f"{current}); upgrade zsrbench (pip install -U zsrbench)."
        )
    out = data
    while version < current:
        step = MIGRATIONS[document].get(version)
        if step is None:
            raise ZsrError(f"no migration of a {document} from schema_version {version}; this file cannot be read.")
        out = step(copy.deepcopy(out))
        new = schema_version(out)
        if new <= version:  # pragma: no cover - a broken migration
            raise RuntimeError(f"{document} migration from {version} did not raise the version")
        version = new
    return out


def _percent(value: Any) -> float:
    """``"45.20"``, ``"45.2%"`` or ``45.2`` (percent) -> ``0.452``."""
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    return round(float(value) / 100.0, 12)


def _eps(value: Any) -> tuple[float, str]:
    """``"1/255"`` or ``0.00392`` -> (pixel units, "k/255")."""
    if isinstance(value, str) and value.endswith("/255"):
        k = float(Fraction(value[: -len("/255")]))
    else:
        k = float(value) * 255.0
        k = round(k, 6)
    return k / 255.0, f"{k:g}/255"


@migration("record", 0)
def _record_v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
    """v0 (draft: percent strings, a single attack, ``model.name``) -> v1."""
    model = d.setdefault("model", {})
    if "name" in model and "id" not in model:
        model["id"] = model.pop("name")
    proto = d.setdefault("protocol", {})
    if "attack" in proto and "attacks" not in proto:
        att = proto.pop("attack")
        att = {"name": att["name"], "family": att.get("family", "zsrbench"), "params": att.get("params", {})}
        proto["attacks"] = [att]
    proto.setdefault("suite", "+".join(a["name"] for a in proto.get("attacks", [])))
    if "eps" in proto:
        proto["eps"], text = _eps(proto["eps"])
        proto.setdefault("eps_text", text)
    m = d.setdefault("metrics", {})
    renames = {"clean_acc": "clean_accuracy", "robust_acc": "robust_accuracy"}
    for old, new in renames.items():
        if old in m:
            m[new] = _percent(m.pop(old))
    m["per_attack"] = {k: _percent(v) for k, v in m.get("per_attack", {}).items()}
    k = int(m["num_classes"])
    m.setdefault("chance", 1.0 / k)

    def norm(a: float) -> float:
        return (a - 1.0 / k) / (1 - 1.0 / k) if k > 1 else 0.0

    m.setdefault("clean_normalised", norm(m["clean_accuracy"]))
    m.setdefault("robust_normalised", norm(m["robust_accuracy"]))
    d.setdefault("kind", "measured")
    d["schema_version"] = 1
    return d
