"""The attention-shift record `zsrbench attention` writes for one model on one dataset
(:class:`zsrbench.leaderboard.shift_record.AttentionShiftRecord`): the model as result records name it, the
protocol, the attack, the map definition and the per-image shifts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

import zsrbench
from zsrbench.attacks.base import eps_text
from zsrbench.defenses import attention as att
from zsrbench.figures.attention_maps import MAP_SIZE, nonclass_template
from zsrbench.figures.attention_measure import ModelMaps
from zsrbench.figures.attention_models import LoadedModel
from zsrbench.figures.attention_plan import AttentionPlan
from zsrbench.figures.shift import summarise
from zsrbench.leaderboard.shift_record import AttentionShiftRecord, MapDefinition, ShiftProtocol, ShiftStats

ADVERSARY = "white-box: x′ is the attack against this model's own classifier (Defense.wrap_classifier)"
CLASS_TEXT = "the true class's embedding in the zero-shot head (the dataset's prompts, L2-normalised)"


def _stats(values: np.ndarray) -> ShiftStats:
    s = summarise(values)
    return ShiftStats(n=s.n, mean=s.mean, se=s.se, std=s.std, values=[float(v) for v in values])


def shift_record(plan: AttentionPlan, m: LoadedModel, maps: ModelMaps, evalset: Any, indices: Sequence[int],
                 head_info: dict[str, Any], base_id: str | None, wall_s: float) -> AttentionShiftRecord:
    """The attention-shift record of one model on the plan's dataset."""
    from zsrbench.data.base import indices_digest
    from zsrbench.leaderboard.schema import AttackConfig
    from zsrbench.evaluation.records import environment, git_sha, model_info

    info = evalset.info
    template = nonclass_template(m.defense)
    return AttentionShiftRecord(
        zsrbench_version=zsrbench.__version__, git_sha=git_sha(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=model_info(m.model_id, m.defense, m.parts, m.checkpoint, head_info["text_tower_sha256"]),
        base_model=None if m.is_base else base_id,
        protocol=ShiftProtocol(name=plan.protocol.name, version=plan.protocol.version, dataset=plan.dataset,
                               split=info.split, n_total=len(evalset), n_samples=len(indices), seed=plan.seed,
                               indices_digest=indices_digest(indices), input_size=m.parts.image_size,
                               eps=plan.eps / 255.0, eps_text=eps_text(plan.eps), batch_size=plan.batch_size,
                               variant=plan.variant),
        attack=AttackConfig(name=plan.spec.name, family=plan.spec.family, params=dict(plan.params)),
        adversary=ADVERSARY,
        map=MapDefinition(map="text_guided_attention" + (" + complementary" if template else ""), norm=plan.cfg.norm,
                          size=MAP_SIZE, upsampling="bilinear, align_corners=False, from the √P×√P patch grid",
                          minmax=f"per image over the patches, before upsampling (denominator ≥ {att.MINMAX_EPS:g})",
                          text=CLASS_TEXT, templates_digest=info.templates_digest(), nonclass_template=template,
                          distance="plain L2 over the flattened size×size map, clean vs adversarial image"),
        shift=_stats(maps.shifts["class"]),
        complementary_shift=_stats(maps.shifts["comp"]) if "comp" in maps.shifts else None,
        counts={"clean_correct": maps.clean_correct, "robust": maps.robust},
        env=environment(plan.device), timing={"wall_s": round(wall_s, 3)})
