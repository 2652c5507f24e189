"""The model a run evaluates: the defense with its inference settings, and its weights (a checkpoint, the shipped
micro defenses, or fine-tuned on demand)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from zsrbench.errors import ZsrError
from zsrbench.evaluation.config import RunConfig
from zsrbench.models.clip import CLIPParts
from zsrbench.protocols import Protocol
from zsrbench.registry import DEFENSES


def prepare_model(cfg: RunConfig, protocol: Protocol, *, device: str, seed: int, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> tuple[Any, CLIPParts, str | None]:
    """The defense, its loaded model and the checkpoint it came from (fine-tuned on demand where the protocol
    allows it and no checkpoint was given)."""
    from zsrbench.defenses.base import LoadSpec, instantiate
    from zsrbench.models import shipped

    defense = instantiate(DEFENSES.get(cfg.defense), cfg.defense_params)
    owner = _weights_owner(defense)  # whose weights are evaluated (a test-time defense's victim)
    checkpoint = cfg.checkpoint
    ship = shipped.by_name(checkpoint) if checkpoint and checkpoint.startswith(shipped.PREFIX) else None
    if checkpoint is None and getattr(owner, "trainable", False):
        ship = shipped_weights(owner.name, protocol, seed)
        if ship is None:
            from zsrbench.training.on_demand import ensure_trained

            checkpoint = str(ensure_trained(owner.name, protocol, seed=seed, device=device, progress=progress,
                                            log=log))
    torch.manual_seed(seed)  # a model without pretrained weights is initialised from the run's seed
    model_name = cfg.model or protocol.default_model
    pretrained = cfg.pretrained if cfg.pretrained is not None else (protocol.default_pretrained if cfg.model is None else None)
    if ship is not None:  # the exact model the committed leaderboard evaluates, pinned by sha256
        if log:
            log(f"{defense.name}{'' if owner is defense else f' on {owner.name}'}: the shipped {ship.name} = {ship.model_id} (sha256 {ship.sha256[:12]}…; no "
                "fine-tuning)")
        parts = defense.load(LoadSpec(model=model_name, pretrained=pretrained, checkpoint=str(ship.path),
                                      checkpoint_sha256=ship.sha256), device=device)
        _record_shipped(parts, ship)
        return defense, parts, ship.name
    parts = defense.load(LoadSpec(model=model_name, pretrained=pretrained, checkpoint=checkpoint,
                                  checkpoint_sha256=cfg.checkpoint_sha256, trust_checkpoint=cfg.trust_checkpoint),
                         device=device)
    return defense, parts, checkpoint


def _weights_owner(defense: Any) -> Any:
    """The defense whose weights ``defense`` evaluates: the registered defense its ``victim`` setting names (a
    test-time defense around another model), else itself."""
    from zsrbench.defenses.base import instantiate

    victim = getattr(defense, "inference", {}).get("victim")
    if not victim or victim == defense.name:
        return defense
    return instantiate(DEFENSES.get(victim))  # (the defense's own inference_config checked the name)


def shipped_weights(defense: str, protocol: Protocol, seed: int) -> Any:
    """The weights the package ships for ``defense`` fine-tuned under the protocol's recipe and ``seed`` (None:
    none ship, or the recipe, base model or training loop changed since; then it is fine-tuned on demand)."""
    from zsrbench.models import shipped
    from zsrbench.training.on_demand import on_demand_key

    return shipped.lookup(defense, protocol.name, protocol.version, seed, on_demand_key(defense, protocol, seed))


def _record_shipped(parts: CLIPParts, ship: Any) -> None:
    """Name the shipped model in the records (not a local path) with its training choices, and make sure it is
    the model the package says it is."""
    from zsrbench.defenses.loading import _record_training

    if parts.tensors_sha256() != ship.tensors_sha256:
        raise ZsrError(f"The shipped {ship.name} loads as tensors {parts.tensors_sha256()[:12]}…, not the "
                       f"{ship.tensors_sha256[:12]}… the package pins: the installation is damaged. Reinstall zsrbench.")
    parts.source["catalogue"] = ship.name
    _record_training(parts, {**ship.training(), "weights_sha256": ship.sha256})
