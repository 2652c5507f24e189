"""Work units: a dataset's evaluation as fixed batches, each evaluated, stored and resumed on its own.

A unit is one batch of the run's batch size (the protocol's unless ``--batch-size`` says otherwise): positions
``[k·B, (k+1)·B)`` of the dataset's selected samples. Its attack seeds depend only on the run's seed, the attack
and the unit's first position (see :func:`zsrbench.evaluation.unit.batch_seed`), so a unit's flags do not depend on which
process evaluates it or how many processes there are.

While a dataset is evaluated, each finished unit is written atomically to ``<record>.units/<key>/u00042.npz``
next to where the dataset's record will be; ``key`` digests every setting that changes the flags, so a unit of
other settings is never taken. ``--resume`` (also after ``kill -9``) re-evaluates only the units that are not
on disk. Once every unit is there the record is assembled from them, exactly as one pass would have made it,
and the unit folder is removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ARRAYS = ("labels", "clean_pred", "nonfinite")  # besides robust__<attack>, one row per sample of the unit


@dataclass
class UnitResult:
    """The per-sample flags of one unit, what its attacks reported and how long it took."""

    index: int
    labels: np.ndarray
    clean_pred: np.ndarray
    robust: dict[str, np.ndarray]  # attack -> robust to it (clean-correct and not broken)
    nonfinite: np.ndarray
    infos: dict[str, list[str]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        arrays = {k: getattr(self, k) for k in ARRAYS}
        arrays.update({f"robust__{k}": v for k, v in self.robust.items()})
        meta = json.dumps({"index": self.index, "attacks": list(self.robust), "infos": self.infos,
                           "timing": self.timing})
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "UnitResult":
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            return cls(index=meta["index"], labels=z["labels"], clean_pred=z["clean_pred"],
                       robust={a: z[f"robust__{a}"] for a in meta["attacks"]}, nonfinite=z["nonfinite"],
                       infos=meta["infos"], timing=meta["timing"])


def fits(unit: UnitResult, size: int) -> bool:
    """Every array of ``unit`` is one-dimensional with ``size`` rows (a unit file of other bounds is not taken)."""
    arrays = [unit.labels, unit.clean_pred, unit.nonfinite, *unit.robust.values()]
    return all(a.ndim == 1 and a.shape[0] == size for a in arrays)


def unit_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` positions of each unit of ``n`` samples in batches of ``batch_size``."""
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def settings_key(parts: dict[str, Any]) -> str:
    """A short digest of the settings a unit's flags depend on (``parts`` must be JSON-serialisable)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def assemble(units: Sequence[UnitResult], attacks: Sequence[str]) -> tuple[dict[str, np.ndarray],
                                                                            dict[str, list[str]], dict[str, float]]:
    """The dataset's flags, infos and summed timings from all of its units (in unit order)."""
    units = sorted(units, key=lambda u: u.index)
    labels = np.concatenate([u.labels for u in units])
    clean_pred = np.concatenate([u.clean_pred for u in units])
    robust = {a: np.concatenate([u.robust[a] for u in units]) for a in attacks}
    nonfinite = np.concatenate([u.nonfinite for u in units])
    worst = np.logical_and.reduce([robust[a] for a in attacks]) if attacks else clean_pred == labels
    flags = {"labels": labels, "clean_pred": clean_pred, "clean_correct": clean_pred == labels, "robust": worst}
    flags.update({f"robust__{k}": v for k, v in robust.items()})
    flags["nonfinite"] = nonfinite
    infos: dict[str, list[str]] = {"fallbacks": [], "autoattack_warnings": [], "notes": []}
    for u in units:
        for k, v in u.infos.items():
            infos.setdefault(k, []).extend(v)
    infos = {k: sorted(set(v)) for k, v in infos.items()}
    if nonfinite.any():
        infos["notes"].append(f"{int(nonfinite.sum())} sample(s) with non-finite logits (NaN/inf): counted neither "
                              "correct nor robust")
    timing: dict[str, float] = {}
    for u in units:
        for k, v in u.timing.items():
            timing[k] = timing.get(k, 0.0) + float(v)
    return flags, infos, timing


class UnitStore:
    """The finished units of one dataset's evaluation under one settings key."""

    def __init__(self, record_path: Path, key: str) -> None:
        self.root = record_path.with_name(record_path.stem + ".units")
        self.folder = self.root / key

    def path(self, index: int) -> Path:
        return self.folder / f"u{index:05d}.npz"

    def load(self, index: int, size: int | None = None, attacks: Sequence[str] | None = None) -> UnitResult | None:
        """The stored unit, or None when absent, unreadable or not a unit of ``size`` samples under ``attacks``
        (then it is evaluated again): every array holds one row per sample of the unit."""
        p = self.path(index)
        try:
            unit = UnitResult.from_bytes(p.read_bytes())
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            return None
        if unit.index != index or (attacks is not None and list(unit.robust) != list(attacks)):
            return None
        return unit if size is None or fits(unit, size) else None

    def save(self, unit: UnitResult) -> None:
        from zsrbench.leaderboard.atomic import replace_files

        replace_files([(self.path(unit.index), unit.to_bytes())])  # (folders it makes are removed on failure)

    def clear(self) -> None:
        """Remove every unit of this dataset (all keys): its record now holds them."""
        shutil.rmtree(self.root, ignore_errors=True)
