"""Defenses fine-tuned on demand: the protocol's shared recipe, trained once into zsrbench's cache (keyed by
everything that shapes the weights) and taken from there afterwards; an interrupted training resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from zsrbench.errors import ZsrError
from zsrbench.training.loop import train_defense


TRAINING_REVISION = 2  # 2: threads pinned (pinned_threads); weights cached by revision 1 are not reused


def on_demand_key(defense_name: str, proto: Any, seed: int) -> str:
    """The 12-hex key of a defense fine-tuned on demand under ``proto``: everything that shapes its weights (the
    defense, the protocol and its version, the shared recipe, the base model and its weights' sha256, the seed,
    the training loop's revision). Shipped weights carry the key they were trained under."""
    from zsrbench.data.base import digest_json
    from zsrbench.models.clip import SHIPPED_TAG
    from zsrbench.models.weights import sha256_file

    base_weights = None
    if proto.default_pretrained == SHIPPED_TAG:  # re-trained when the shipped base model changes
        from zsrbench.models.shipped import resolve_pretrained

        base_weights = sha256_file(resolve_pretrained(proto.default_model, SHIPPED_TAG))
    return digest_json({"defense": defense_name, "protocol": proto.name, "version": proto.version,
                        "recipe": proto.train_recipe, "model": proto.default_model,
                        "pretrained": proto.default_pretrained, "base_weights": base_weights, "seed": int(seed),
                        "training": TRAINING_REVISION}).split(":")[1][:12]


def on_demand_dir(defense_name: str, proto: Any, seed: int) -> Path:
    """The cache folder of a defense fine-tuned on demand under ``proto`` (keyed by :func:`on_demand_key`)."""
    from zsrbench.paths import cache_dir

    key = on_demand_key(defense_name, proto, seed)
    return cache_dir() / "defenses" / f"{proto.name}-v{proto.version}" / f"{defense_name}-s{seed}-{key}"


def ensure_trained(defense_name: str, protocol: str | Any, *, seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """The protocol's fine-tuned ``defense_name``: trained with the protocol's shared recipe on first use, then
    taken from the cache (an interrupted training resumes). Returns the ``local-dir`` folder."""
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    proto = PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    if not proto.train_on_demand:
        raise ZsrError(
            f"Defense '{defense_name}' needs fine-tuned weights under protocol '{proto.name}': pass --checkpoint "
            f"(a folder written by `zsrbench train`, a visual checkpoint file, or a published checkpoint name), "
            f"or train it first: zsrbench train --defense {defense_name} --protocol {proto.name} --data-root DIR."
        )
    out = on_demand_dir(defense_name, proto, seed)
    manifest = out / "manifest.json"
    if log and not (manifest.is_file() and json.loads(manifest.read_text()).get("completed")):
        log(f"fine-tuning {defense_name} on {proto.train_dataset} with the {proto.name} recipe -> {out}")
    result = train_defense(defense_name, protocol=proto, out_dir=out, seed=seed,
                           device=device, resume=True, progress=progress, keep_checkpoints=False)
    if not result.completed:  # pragma: no cover - only a callback can stop it
        raise ZsrError(f"Fine-tuning {defense_name} did not finish; run the command again to resume it.")
    return out
