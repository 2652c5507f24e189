"""The attention shift: how far an attack moves a model's text-guided attention map (pure functions).

``shift(x) = ‖A(x′) − A(x)‖₂``: the plain L2 distance between the min-max normalised, upsampled maps of the
clean image ``x`` and its adversarial version ``x′`` (the maps of :mod:`zsrbench.defenses.attention`, flattened;
for the default 224×224 maps a vector of 50,176 values in [0, 1]). A model whose attention an attack cannot
move has a small shift; TGA-ZSR and Comp-TGA train for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


def attention_shift(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Per image ``‖adv − clean‖₂`` over the whole map: [B, N] or [B, H, W] maps → [B] (float32)."""
    if clean.shape != adv.shape:
        raise ValueError(f"maps of different shapes: {tuple(clean.shape)} and {tuple(adv.shape)}")
    return torch.linalg.vector_norm((adv.float() - clean.float()).flatten(1), ord=2, dim=1)


@dataclass(frozen=True)
class ShiftSummary:
    """Mean of per-image shifts with its standard error ``s / √n`` (None for a single image)."""

    n: int
    mean: float
    se: float | None
    std: float | None  # sample standard deviation (ddof = 1)


def summarise(values: Sequence[float] | np.ndarray) -> ShiftSummary:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no images")
    if v.size == 1:
        return ShiftSummary(1, float(v[0]), None, None)
    std = float(v.std(ddof=1))
    return ShiftSummary(int(v.size), float(v.mean()), std / math.sqrt(v.size), std)
