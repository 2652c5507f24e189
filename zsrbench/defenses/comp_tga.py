"""Comp-TGA (Yu, Zhang, Xu, 2026; arXiv 2603.18598): TGA-ZSR with the complementary attention map (spec §6).

``A_comp = A_class ⊙ (1 − A_nonclass)``: ``A_class`` from "This is a photo of a {}" and ``A_nonclass`` from
"This is not a photo of a {}" for the ground-truth class, both from the same patch features, each min-max
normalised before upsampling, product after upsampling, no re-normalisation. α = 0.10, β = 0.07. The CE term
and the training attack use the class prompts only. Maps are upsampled to 224×224 as in TGA-ZSR; the distance
is computed exactly per patch-grid cell (``distance="moments"``) without materialising them.
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


def comp_tga_loss(logits_adv, y, att_adv, att_clean, att_frozen, *, alpha: float = 0.10, beta: float = 0.07,
                  size: int | None = None):
    """Comp-TGA's loss: :func:`tga_loss` on complementary maps: upsampled [B, N] maps, or (with ``size``) [B, 2, P]
    pairs of (class, non-class) grid maps whose product maps are compared exactly at size×size."""
    distance = None if size is None else (lambda a, b: att.product_upsampled_l2(a, b, size))
    return tga_loss(logits_adv, y, att_adv, att_clean, att_frozen, alpha=alpha, beta=beta, distance=distance)


@dataclass(frozen=True)
class CompTGAHparams(TGAHparams):
    alpha: float = 0.10
    beta: float = 0.07
    nonclass_template: str = NONCLASS_TEMPLATE
    distance: str = "moments"  # exact per-cell form of the upsampled product maps | "explicit" materialises them
    # the official code's quirk, off by default: re-seed the training attack's generator before every attack, so
    # every batch (of the same shape) gets the same random start
    reseed_training_attack: bool = False

    def validate(self) -> None:
        super().validate()
        if self.distance == "gram":
            raise ZsrError("Comp-TGA's map is a product of upsampled maps (not linear): use distance='moments' "
                           "(exact, default) or 'explicit'.")


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
        "distance": "plain L2 over the upsampled product map; 'moments' (default) computes the same value exactly "
                    "per patch-grid cell without materialising the 224×224 maps, 'explicit' materialises them",
        "reseed_training_attack": "False: a fresh random start for every training attack (the paper's method); the "
                                  "official code re-seeds the global RNG before every training attack, so from the "
                                  "second step on every batch gets the same random start: True reproduces that "
                                  "(the attack's generator is re-seeded with the run's seed before each attack)",
    }

    def text_prompts(self, classnames, info_prompts) -> dict[str, list[list[str]]]:
        prompts = super().text_prompts(classnames, info_prompts)
        prompts["nonclass"] = [[self.hp.nonclass_template.format(c)] for c in classnames]
        return prompts

    def attention_texts(self, b: TrainBatch, model: Any) -> tuple[torch.Tensor, ...]:
        if "nonclass" not in b.texts:
            raise ZsrError("Comp-TGA needs the non-class text embeddings (batch.texts['nonclass']).")
        return (b.texts.get("class", model.head)[b.y], b.texts["nonclass"][b.y])

    def attention(self, feats: torch.Tensor, texts: tuple[torch.Tensor, ...], size: int, mode: str) -> torch.Tensor:
        """``A_class ⊙ (1 − A_nonclass)`` upsampled [B, size²] ("explicit"), or the (class, non-class) grid maps
        [B, 2, P] it is the product of ("moments")."""
        if mode == "explicit":
            return att.complementary_attention(feats, texts[0], texts[1], size=size, norm=self.hp.attention_norm)
        if mode != "moments":
            raise ZsrError(f"Comp-TGA computes its distance as 'moments' or 'explicit', not {mode!r}.")
        norm = self.hp.attention_norm
        return torch.stack([att.attention_small(feats, texts[0], norm), att.attention_small(feats, texts[1], norm)], 1)
