"""Weights that ship inside the package, and how names resolve to them (all under ``zsrbench/micro/weights/``).

**The micro CLIP** (pretrained tag ``zsrbench``), an open_clip ``local-dir:`` folder::

    zsrbench/micro/weights/zsr-micro/
        open_clip_config.json        (model_cfg = zsrbench/model_configs/zsr-micro.json, CLIP mean/std)
        open_clip_model.safetensors  (fp16)
        manifest.json                (seed, steps, sha256, accuracies, the command that rebuilds it)

Both ``build_clip("local-dir:" + str(resolve_micro_weights()))`` and ``build_clip("zsr-micro", "zsrbench")`` load
it (:func:`resolve_pretrained` maps the tag).

**The micro defenses** the committed leaderboard evaluates: exact, sha256-pinned visual towers, so that
``zsrbench run --defense comp_tga`` under ``micro`` evaluates *the* committed model (same model id) without
fine-tuning, on any machine::

    zsrbench/micro/weights/defenses/
        manifest.json            one entry per defense: its file and sha256, the on-demand key it was trained
                                 under (zsrbench.training.on_demand.on_demand_key), the model id and tensor digest
        <defense>.safetensors    the fine-tuned visual tower (fp32 state dict, canonical safetensors bytes)
        <defense>.json           the training manifest: recipe, hyper-parameters, seed, loss curve, versions,
                                 determinism settings (machine-specific fields left out)

A shipped defense is named ``zsrbench:micro-v<version>/<defense>-s<seed>`` (what result records write as its
checkpoint). It is used only when its key equals the key the protocol, the shipped base CLIP and the seed give
now; otherwise the defense is fine-tuned on demand. ``zsrbench train --protocol micro --defense D`` reproduces
each file bit-identically (training runs on one intra-op thread); ``python scripts/ship_micro_defenses.py``
rebuilds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError

WEIGHTS_ROOT = Path(__file__).resolve().parent.parent / "micro" / "weights"

ARCH = "zsr-micro"
PRETRAINED_TAG = "zsrbench"
WEIGHTS_DIR = WEIGHTS_ROOT / ARCH
WEIGHTS_FILE = "open_clip_model.safetensors"
MANIFEST_FILE = "manifest.json"
REBUILD_HINT = "Rebuild them with `zsrbench pretrain --protocol micro --out {dir}` (see manifest.json for the seed and steps)."


def resolve_micro_weights() -> Path:
    """The folder of the shipped micro CLIP (an open_clip ``local-dir:`` model)."""
    if not (WEIGHTS_DIR / WEIGHTS_FILE).is_file():
        raise ZsrError(f"The micro CLIP weights are missing from {WEIGHTS_DIR}. " + REBUILD_HINT.format(dir=WEIGHTS_DIR))
    return WEIGHTS_DIR


def local_dir_name() -> str:
    """``local-dir:<path>``: the model name build_clip accepts for the shipped micro CLIP."""
    return f"local-dir:{resolve_micro_weights()}"


def resolve_pretrained(arch: str, tag: str | None) -> str | None:
    """The weights file for ``(arch, tag)`` when zsrbench ships it, else None (leave the tag to open_clip).

    ``("zsr-micro", "zsrbench")`` -> ``.../zsrbench/micro/weights/zsr-micro/open_clip_model.safetensors``,
    a path open_clip's ``create_model(arch, pretrained=<file>)`` loads strictly.
    """
    if tag != PRETRAINED_TAG:
        return None
    if arch != ARCH:
        raise ZsrError(f"Pretrained tag '{PRETRAINED_TAG}' exists only for {ARCH}, not {arch}.")
    return str(resolve_micro_weights() / WEIGHTS_FILE)


def manifest() -> dict[str, Any]:
    return json.loads((resolve_micro_weights() / MANIFEST_FILE).read_text())


def verify_weights() -> dict[str, Any]:
    """Check the shipped weights against their manifest's sha256; return the manifest."""
    from zsrbench.models.weights import sha256_file

    m = manifest()
    digest = sha256_file(WEIGHTS_DIR / WEIGHTS_FILE)
    if digest != m["weights_sha256"]:
        raise ZsrError(f"{WEIGHTS_DIR / WEIGHTS_FILE} has sha256 {digest}, the manifest says {m['weights_sha256']}. "
                       + REBUILD_HINT.format(dir=WEIGHTS_DIR))
    return m


SHIPPED_DIR = WEIGHTS_ROOT / "defenses"
MANIFEST = "manifest.json"
PREFIX = "zsrbench:"


@dataclass(frozen=True)
class ShippedDefense:
    name: str  # zsrbench:micro-v3/tecoa-s0
    defense: str
    path: Path
    sha256: str  # of the file's bytes
    key: str  # zsrbench.training.on_demand.on_demand_key at the time it was trained
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
