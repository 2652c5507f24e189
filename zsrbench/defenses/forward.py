"""Forward-pass helpers the defenses' losses and the training loop share: :func:`same_kernels` (the trained model
and its frozen copy compute with the same kernels) and :func:`embed` (an image embedding)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


@contextlib.contextmanager
def same_kernels() -> Iterator[None]:
    """The model being trained and its frozen copy compute with the same kernels inside this block.

    torch's ``nn.MultiheadAttention`` takes a fused "fast path" when no gradient is needed (the frozen copy, under
    ``no_grad``) and its head count is even, and the general path otherwise (the trained copy): the two differ in
    the last bits, so at θ = θ0 a term that compares them (the TGA-ZSR attention constraint, PMG-AFT's KL to the
    frozen model) was ~1e-5 instead of 0. The fast path is off inside the block (restored afterwards); models
    whose attention has an odd head count (the micro CLIP) never took it.
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def embed(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Unnormalised image embedding of a :class:`~zsrbench.models.ZeroShotClassifier` (one forward)."""
    return model.visual(model.prepare(x))
