"""Models: building CLIP (:mod:`.clip`), reading and checking weights (:mod:`.weights`), the zero-shot classifier
and its text heads (:mod:`.classifier`), the weights that ship in the package (:mod:`.shipped`) and the catalogue
of published checkpoints (:mod:`.catalogue`). The names a plugin's ``load`` works with are importable from here."""

from zsrbench.models.classifier import ZeroShotClassifier, make_classifier
from zsrbench.models.clip import CLIPParts, build_clip

__all__ = ["CLIPParts", "ZeroShotClassifier", "build_clip", "make_classifier"]
