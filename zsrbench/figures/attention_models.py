"""The models `zsrbench attention` shows: the protocol's base CLIP and each defense, loaded as `zsrbench run`
loads them (:func:`zsrbench.evaluation.model.prepare_model`), each once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from zsrbench.evaluation.config import RunConfig
from zsrbench.figures.attention_plan import AttentionPlan, run_config


@dataclass
class LoadedModel:
    """A model to measure: its label in the figure, defense, CLIP parts, checkpoint and id."""

    label: str
    defense: Any
    parts: Any
    checkpoint: str | None
    model_id: str
    is_base: bool


def load_models(plan: AttentionPlan, log: Callable[[str], None] | None = None,
                progress: bool = False) -> tuple[list[LoadedModel], list[str]]:
    """The protocol's base model (when it has one) and each defense, loaded as `zsrbench run` loads them; a
    defense whose model is the base model (the same tensors) is shown once, as the base."""
    from zsrbench.defenses.identity import model_id
    from zsrbench.evaluation.model import prepare_model

    cfg, protocol = plan.cfg, plan.protocol
    loaded: list[LoadedModel] = []
    notes: list[str] = []
    if protocol.base_model is not None:
        base_cfg = RunConfig(defense=protocol.base_model, protocol=protocol.name, device=plan.device)
        d, parts, ck = prepare_model(base_cfg, protocol, device=plan.device, seed=plan.seed, progress=progress, log=log)
        loaded.append(LoadedModel(f"{d.name} (base)", d, parts, ck, model_id(d, parts), True))
    else:
        notes.append(f"protocol {protocol.name} has no undefended base model; only the defenses are shown")
    for name in cfg.defenses:
        d, parts, ck = prepare_model(run_config(cfg, name, plan.dataset), protocol, device=plan.device,
                                     seed=plan.seed, progress=progress, log=log)
        mid = model_id(d, parts)
        if any(m.model_id == mid for m in loaded):
            notes.append(f"{name} is the same model as {next(m.label for m in loaded if m.model_id == mid)} "
                         f"({mid}); shown once")
            continue
        loaded.append(LoadedModel(d.name, d, parts, ck, mid, False))
    return loaded, notes
