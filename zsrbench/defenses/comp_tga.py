"""Comp-TGA (Yu, Zhang, Xu, 2026; arXiv 2603.18598): TGA-ZSR with the complementary attention map (spec §6).

``A_comp = A_class ⊙ (1 − A_nonclass)``: ``A_class`` from "This is a photo of a {}" and ``A_nonclass`` from
"This is not a photo of a {}" for the ground-truth class, both from the same patch features, each min-max
normalised before upsampling, product after upsampling, no re-normalisation. α = 0.10, β = 0.07. The CE term
and the training attack use the class prompts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zsrbench.defenses import attention as att
from zsrbench.defenses.base import TrainBatch
from zsrbench.defenses.tga_zsr import TGAHparams, TGAZSR, tga_loss
from zsrbench.errors import ZsrError
from zsrbench.registry import DEFENSES

NONCLASS_TEMPLATE = "This is not a photo of a {}"


def comp_tga_loss(logits_adv, y, att_adv, att_clean, att_frozen, *, alpha: float = 0.10, beta: float = 0.07):
    """Comp-TGA's loss: :func:`tga_loss` on complementary maps (upsampled; the product is not linear)."""
    return tga_loss(logits_adv, y, att_adv, att_clean, att_frozen, alpha=alpha, beta=beta)


@dataclass(frozen=True)
class CompTGAHparams(TGAHparams):
    alpha: float = 0.10
    beta: float = 0.07
    nonclass_template: str = NONCLASS_TEMPLATE

    def validate(self) -> None:
        super().validate()
        if self.distance != "explicit":
            raise ZsrError("Comp-TGA's map is a product of upsampled maps (not linear): use distance='explicit'.")


@DEFENSES.register("comp_tga", "comptga")
class CompTGA(TGAZSR):
    name = "comp_tga"
    paper = "Yu, Zhang, Xu, Comp-TGA (complementary text-guided attention), arXiv 2603.18598, 2026"
    description = "TGA-ZSR with the complementary map A_class ⊙ (1 − A_nonclass) ('This is not a photo of a {}')"
    default_hparams = CompTGAHparams()
    quirks = {
        **TGAZSR.quirks,
        "complementary_map": "each map min-max normalised before upsampling, product after, no re-normalisation",
        "nonclass_template": "'This is not a photo of a {}' (class prompt: the CE template)",
    }

    def text_prompts(self, classnames, info_prompts) -> dict[str, list[list[str]]]:
        prompts = super().text_prompts(classnames, info_prompts)
        prompts["nonclass"] = [[self.hp.nonclass_template.format(c)] for c in classnames]
        return prompts

    def attention_texts(self, b: TrainBatch, model: Any) -> tuple[torch.Tensor, ...]:
        if "nonclass" not in b.texts:
            raise ZsrError("Comp-TGA needs the non-class text embeddings (batch.texts['nonclass']).")
        return (b.texts.get("class", model.head)[b.y], b.texts["nonclass"][b.y])

    def attention(self, feats: torch.Tensor, texts: tuple[torch.Tensor, ...], size: int, small: bool) -> torch.Tensor:
        return att.complementary_attention(feats, texts[0], texts[1], size=size, norm=self.hp.attention_norm)
