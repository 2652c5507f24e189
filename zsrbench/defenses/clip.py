"""CLIP without a defense: the zero-shot baseline every defense is compared against."""

from __future__ import annotations

from zsrbench.defenses.base import Defense
from zsrbench.registry import DEFENSES


@DEFENSES.register("clip", "none")
class CLIPDefense(Defense):
    name = "clip"
    paper = "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021"
    description = "no defense: the original CLIP (or any checkpoint given with --checkpoint)"
