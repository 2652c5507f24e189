"""Bit-depth reduction (Xu, Evans, Qi, NDSS 2018): the reference input-purification defense, a known answer.

Every pixel is rounded to ``2^bits`` levels before the zero-shot classifier. The rounding has no useful gradient
(zero almost everywhere), so a white-box attack through it sees masked gradients and the defense looks robust;
BPDA with the identity in the backward pass (Athalye, Carlini, Wagner, ICML 2018) breaks it to about the
undefended model's robustness. zsrbench ships it to show both numbers side by side and to test its adaptive
machinery against that textbook answer; it is not a defense to use.
"""

from __future__ import annotations

import torch

from zsrbench.defenses.base import Defense
from zsrbench.defenses.test_time import Step, TestTime, bpda
from zsrbench.params import Params
from zsrbench.registry import DEFENSES


def reduce_bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``round(x · (2^bits − 1)) / (2^bits − 1)``: ``x`` in [0,1] on ``2^bits`` levels per channel."""
    levels = float(2 ** int(bits) - 1)
    return torch.round(x * levels) / levels


@DEFENSES.register("bitdepth")
class BitDepth(Defense):
    name = "bitdepth"
    paper = ("Xu, Evans, Qi, Feature Squeezing, NDSS 2018 (broken with BPDA: Athalye, Carlini, Wagner, "
             "Obfuscated Gradients Give a False Sense of Security, ICML 2018)")
    description = ("reference input purification: every pixel rounded to 2^bits levels before CLIP "
                   "(non-differentiable; looks robust to a naive attack, falls to BPDA)")
    inference_params = Params(defaults={"bits": 3}, help={"bits": "bits per channel kept (2^bits levels)"},
                              at_most={"bits": 8})
    test_time = TestTime(steps=(Step("bit-depth reduction", differentiable=False, surrogate="identity"),),
                         notes=("deterministic: no EOT needed",))
    notes = ("A known-answer reference: robust-looking to a naive white-box attack (the rounding's gradient is "
             "zero), broken by BPDA. Not a defense to use.",)

    def defend(self, x: torch.Tensor, clf: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        bits = int(self.inference["bits"])
        return clf(bpda(lambda z: reduce_bit_depth(z, bits), x))
