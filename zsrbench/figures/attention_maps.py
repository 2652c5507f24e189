"""The text-guided attention maps of one batch, as `zsrbench attention` draws and measures them (pure functions
of tensors): the true-class map and, for a complementary defense (Comp-TGA), its non-class and complementary
maps; and the non-class prompt that tells such a defense apart."""

from __future__ import annotations

from typing import Any

import torch

from zsrbench.defenses import attention as att

DEFAULT_NORM = "token_axis"
MAP_SIZE = att.DEFAULT_SIZE


def attention_maps(clf: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = DEFAULT_NORM,
                   size: int = MAP_SIZE, nonclass_head: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The true-class maps [B, size, size] of a :class:`~zsrbench.models.ZeroShotClassifier` on images ``x``:
    ``"class"`` (guided by ``clf.head[y]``) and, given a non-class head, ``"nonclass"`` and ``"comp"``
    (Comp-TGA's ``A_class ⊙ (1 − A_nonclass)``)."""
    with torch.no_grad():
        _, feats = att.projected_tokens(clf, x)
        text = clf.head[y]
        maps = {"class": att.text_guided_attention(feats, text, size=size, norm=norm)}
        if nonclass_head is not None:
            other = nonclass_head.to(text.device)[y]
            maps["nonclass"] = att.text_guided_attention(feats, other, size=size, norm=norm)
            maps["comp"] = att.complementary_attention(feats, text, other, size=size, norm=norm)
    return {k: v.reshape(-1, size, size) for k, v in maps.items()}


def nonclass_template(defense: Any) -> str | None:
    """The non-class prompt of a defense whose attention is complementary (Comp-TGA), else None."""
    template = getattr(getattr(defense, "hp", None), "nonclass_template", None)
    return template if isinstance(template, str) else None
