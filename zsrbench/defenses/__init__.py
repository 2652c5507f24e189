"""Defenses. Importing this package registers the built-in defenses in :data:`zsrbench.registry.DEFENSES`."""

from zsrbench.defenses import clip  # noqa: F401
from zsrbench.defenses import comp_tga, fare, pmg_aft, tecoa, tga_zsr  # noqa: F401
from zsrbench.defenses import purify  # noqa: F401
from zsrbench.defenses import ucat  # noqa: F401
from zsrbench.defenses import caw  # noqa: F401
from zsrbench.defenses import ttc  # noqa: F401  (also registers the ttc-gate attack)
from zsrbench.defenses.base import Adversary, Defense, LoadSpec, LossOutput, TrainBatch, TrainHparams  # noqa: F401
