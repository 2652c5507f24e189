"""Measuring one model for `zsrbench attention`: attack it on the seeded images, batch by batch as the runner
seeds them, and keep its maps of the drawn images (:class:`ModelMaps`) and its per-image shifts; and what the
command returns (:class:`AttentionResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from zsrbench.figures.attention_maps import attention_maps, nonclass_template
from zsrbench.figures.attention_models import LoadedModel
from zsrbench.figures.attention_plan import AttentionPlan
from zsrbench.figures.shift import attention_shift
from zsrbench.leaderboard.shift_record import AttentionShiftRecord


@dataclass
class ModelMaps:
    """One model's maps of the drawn images and its shifts over all ``n_shift`` images."""

    label: str
    model_id: str
    defense: str
    is_base: bool
    clean: dict[str, np.ndarray]  # kind -> [n_images, S, S]
    adv: dict[str, np.ndarray]
    x_adv: np.ndarray  # [n_images, 3, H, W] in [0, 1]
    pred_clean: np.ndarray  # [n_images]
    pred_adv: np.ndarray
    shifts: dict[str, np.ndarray]  # kind -> [n_shift] ("class", and "comp" for Comp-TGA)
    clean_correct: int
    robust: int
    record: AttentionShiftRecord | None = None
    path: Path | None = None

    @property
    def kinds(self) -> list[str]:
        return list(self.clean)


@dataclass
class AttentionResult:
    plan: AttentionPlan
    models: list[ModelMaps]
    shift_indices: list[int]
    drawn_indices: list[int]
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _batch(evalset: Any, indices: Sequence[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    items = [evalset.dataset[i] for i in indices]
    x = torch.stack([torch.as_tensor(im) for im, _ in items]).float().to(device)
    y = torch.tensor([int(lbl) for _, lbl in items], device=device)
    return x, y


def measure(plan: AttentionPlan, m: LoadedModel, evalset: Any, indices: Sequence[int],
            drawn: Sequence[int]) -> tuple[ModelMaps, dict[str, Any]]:
    """Attack ``m`` on the ``indices`` images in batches (seeded as the runner seeds them) and measure its maps;
    keep the maps of the ``drawn`` ones. Returns the maps and the text head's info."""
    from zsrbench.evaluation.unit import batch_seed
    from zsrbench.models.classifier import make_classifier, text_head
    from zsrbench.evaluation.units import unit_bounds

    device, spec = plan.device, plan.spec
    clf, head_info = make_classifier(m.parts, evalset.info.prompts(), device=device)
    attacked = m.defense.wrap_classifier(clf)
    template = nonclass_template(m.defense)
    nonclass = None
    if template is not None:
        nonclass, _ = text_head(m.parts, [[template.format(c)] for c in evalset.info.classnames], device=device)
    where = {int(i): k for k, i in enumerate(indices)}
    keep = [where[int(i)] for i in drawn]
    shifts: dict[str, list[torch.Tensor]] = {}
    kept: dict[str, dict[int, Any]] = {"clean": {}, "adv": {}, "x_adv": {}, "pred_clean": {}, "pred_adv": {}}
    correct = robust = 0
    for start, stop in unit_bounds(len(indices), plan.batch_size):
        x, y = _batch(evalset, indices[start:stop], device)
        out = spec(attacked, x, y, eps=plan.eps, seed=batch_seed(plan.seed, spec.name, start), **plan.params)
        x_adv = out.x_adv.detach().to(device)
        with torch.no_grad():
            pred_clean = attacked(x).argmax(1)
            pred_adv = attacked(x_adv).argmax(1)
        ok = pred_clean == y
        correct += int(ok.sum())
        robust += int((ok & ~out.success.to(device)).sum())
        clean_maps = attention_maps(clf, x, y, norm=plan.cfg.norm, nonclass_head=nonclass)
        adv_maps = attention_maps(clf, x_adv, y, norm=plan.cfg.norm, nonclass_head=nonclass)
        for kind in ("class", "comp"):
            if kind in clean_maps:
                shifts.setdefault(kind, []).append(attention_shift(clean_maps[kind], adv_maps[kind]).cpu())
        for pos in (p for p in keep if start <= p < stop):
            r = pos - start
            kept["clean"][pos] = {k: v[r].cpu().numpy() for k, v in clean_maps.items()}
            kept["adv"][pos] = {k: v[r].cpu().numpy() for k, v in adv_maps.items()}
            kept["x_adv"][pos] = x_adv[r].cpu().numpy()
            kept["pred_clean"][pos] = int(pred_clean[r])
            kept["pred_adv"][pos] = int(pred_adv[r])
    kinds = list(kept["clean"][keep[0]])  # (n_images >= 1 is checked)
    maps = ModelMaps(
        label=m.label, model_id=m.model_id, defense=m.defense.name, is_base=m.is_base,
        clean={k: np.stack([kept["clean"][p][k] for p in keep]) for k in kinds},
        adv={k: np.stack([kept["adv"][p][k] for p in keep]) for k in kinds},
        x_adv=np.stack([kept["x_adv"][p] for p in keep]),
        pred_clean=np.array([kept["pred_clean"][p] for p in keep]),
        pred_adv=np.array([kept["pred_adv"][p] for p in keep]),
        shifts={k: torch.cat(v).numpy().astype(np.float64) for k, v in shifts.items()},
        clean_correct=correct, robust=robust)
    return maps, head_info
