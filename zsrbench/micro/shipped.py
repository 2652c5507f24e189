"""The micro defenses that ship with the package: exact, sha256-pinned visual-tower weights.

The committed micro leaderboard evaluates one fine-tuned model per trainable defense. Those models ship inside
the package, so that ``zsrbench run --defense comp_tga`` under ``micro`` evaluates *the* committed model (same
model id) without fine-tuning, on any machine::

    zsrbench/micro/weights/defenses/
        manifest.json            one entry per defense: its file and sha256, the on-demand key it was trained
                                 under (zsrbench.train.on_demand_key), the model id and tensor digest it gives
        <defense>.safetensors    the fine-tuned visual tower (fp32 state dict, canonical safetensors bytes)
        <defense>.json           the training manifest: recipe, hyper-parameters, seed, loss curve, versions,
                                 determinism settings (machine-specific fields left out)

A shipped model is named ``zsrbench:micro-v<version>/<defense>-s<seed>`` (what result records write as its
checkpoint). It is used only when its key equals the key the protocol, the shipped base CLIP and the seed give
now; otherwise the defense is fine-tuned on demand as before. ``zsrbench train --protocol micro --defense D``
reproduces each file bit-identically (training runs on one intra-op thread; see zsrbench.train.pinned_threads);
``python scripts/ship_micro_defenses.py`` rebuilds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError

SHIPPED_DIR = Path(__file__).parent / "weights" / "defenses"
MANIFEST = "manifest.json"
PREFIX = "zsrbench:"
# machine- and run-specific fields of a training manifest, left out of the shipped copy
UNSHIPPED_FIELDS = ("created_at", "argv", "elapsed_s_last_run", "weights_file", "weights_sha256")


@dataclass(frozen=True)
class ShippedDefense:
    name: str  # zsrbench:micro-v3/tecoa-s0
    defense: str
    path: Path
    sha256: str  # of the file's bytes
    key: str  # zsrbench.train.on_demand_key at the time it was trained
    model_id: str
    tensors_sha256: str

    def training(self) -> dict[str, Any]:
        """The training manifest shipped next to the weights."""
        return json.loads(self.path.with_suffix(".json").read_text(encoding="utf-8"))


def shipped_name(protocol: str, version: int, defense: str, seed: int) -> str:
    return f"{PREFIX}{protocol}-v{version}/{defense}-s{seed}"


def _entries() -> dict[str, dict[str, Any]]:
    path = SHIPPED_DIR / MANIFEST
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("defenses", {}))


def by_name(name: str) -> ShippedDefense:
    """The shipped model called ``name`` (``zsrbench:micro-v3/tecoa-s0``); a :class:`ZsrError` listing the shipped
    ones otherwise."""
    for defense, e in _entries().items():
        ship = _shipped(defense, e)
        if ship.name == name:
            return ship
    names = ", ".join(_shipped(d, e).name for d, e in _entries().items()) or "none"
    raise ZsrError(f"No shipped model is called '{name}'; the package ships {names}.")


def lookup(defense: str, protocol: str, version: int, seed: int, key: str) -> ShippedDefense | None:
    """The shipped weights of ``defense`` fine-tuned under (protocol, version, seed) with the on-demand ``key``
    (None when none ship, or when the recipe, the base model or the training loop changed since)."""
    e = _entries().get(defense)
    if e is None or e.get("key") != key:
        return None
    ship = _shipped(defense, e)
    return ship if ship.name == shipped_name(protocol, version, defense, seed) else None


def _shipped(defense: str, e: dict[str, Any]) -> ShippedDefense:
    return ShippedDefense(name=shipped_name(e["protocol"], int(e["version"]), defense, int(e["seed"])), defense=defense,
                          path=SHIPPED_DIR / e["file"], sha256=e["sha256"], key=e["key"], model_id=e["model_id"],
                          tensors_sha256=e["tensors_sha256"])


def visual_bytes(state: dict[str, Any]) -> bytes:
    """The canonical file of a visual-tower state dict: safetensors, fp32 as trained, one metadata key (the
    format: safetensors writes its metadata map in no fixed order, so one key keeps equal tensors equal bytes)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(state.items())}
    return save(tensors, metadata={"format": "pt"})


def export_visual(folder: str | Path) -> bytes:
    """:func:`visual_bytes` of the visual tower of a folder written by ``zsrbench train``."""
    from safetensors.torch import load_file

    from zsrbench.train import WEIGHTS_FILE

    full = load_file(str(Path(folder) / WEIGHTS_FILE))
    return visual_bytes({k.removeprefix("visual."): v for k, v in full.items() if k.startswith("visual.")})


def shipped_training(manifest: dict[str, Any]) -> dict[str, Any]:
    """A training manifest without its machine- and run-specific fields (what ships next to the weights)."""
    out = {k: v for k, v in manifest.items() if k not in UNSHIPPED_FIELDS}
    det = dict(out.get("determinism") or {})
    det.pop("machine_threads", None)
    out["determinism"] = det
    return out
