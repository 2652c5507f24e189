"""The defense interface: how a defense is loaded for evaluation and, for trained ones, what it optimises.

A trained defense declares its hyper-parameters as a frozen dataclass (a subclass of :class:`TrainHparams`, the
settings the one training loop in :mod:`zsrbench.training` reads: optimiser, schedule, training adversary,
precision) and implements :meth:`Defense.loss`, a pure function of the batch, the model being fine-tuned, the
frozen original and the training adversary. The loop never knows a defense by name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, ClassVar

import torch

from zsrbench.defenses.adversary import Adversary
from zsrbench.defenses.forward import embed, same_kernels
from zsrbench.defenses.hparams import IMAGENET_MEAN, IMAGENET_STD, TECOA_TEMPLATE, TrainHparams
from zsrbench.defenses.loading import LoadSpec, load_checkpoint
from zsrbench.defenses.test_time import Step, TestTime, TestTimeClassifier, bpda
from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts
from zsrbench.params import Params

# the plugin API (docs/plugins.md): what a defense plugin imports from here, wherever it is defined
__all__ = [
    "Adversary", "Defense", "LoadSpec", "LossOutput", "TrainBatch", "TrainHparams", "as_batch", "embed", "instantiate",
    "same_kernels", "IMAGENET_MEAN", "IMAGENET_STD", "TECOA_TEMPLATE", "Step", "TestTime", "bpda",
]


@dataclass
class LossOutput:
    """A training loss: the tensor to back-propagate and named float terms for the loss curve."""

    total: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainBatch:
    """One training batch: images in [0,1], labels, dataset indices, and the text embeddings the defense uses.

    ``texts`` holds the L2-normalised text embeddings computed once by the loop (``"class"``: the class head;
    defenses may ask for more with :meth:`Defense.text_prompts`, e.g. Comp-TGA's ``"nonclass"``).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None
    texts: dict[str, torch.Tensor] = field(default_factory=dict)


def as_batch(batch: Any) -> TrainBatch:
    if isinstance(batch, TrainBatch):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return TrainBatch(x=batch[0], y=batch[1])
    raise TypeError("batch must be a TrainBatch or an (images, labels) pair")


class Defense:
    """A registered defense. Subclasses set ``name``, ``paper``, ``description``, ``default_hparams``.

    Trained defenses also set ``trainable = True`` and implement :meth:`loss`; ``quirks`` documents, per
    hyper-parameter, where the original code and the paper differ and which one is the default.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_hparams: ClassVar[Any] = None
    trainable: ClassVar[bool] = False
    quirks: ClassVar[dict[str, str]] = {}
    notes: ClassVar[tuple[str, ...]] = ()
    # settings of what the defense does at inference (around or inside the classifier), declared like an attack's
    # parameters: set with `--set DEFENSE.KEY=VALUE`, recorded, and part of the model id (see inference_identity)
    inference_params: ClassVar[Params] = Params()
    # what the defense does per image at inference, declared (zsrbench.defenses.test_time): its steps, which have
    # no useful gradient (attacked with BPDA) and whether it draws random numbers (attacked with EOT); a defense
    # that declares it implements `defend`
    test_time: ClassVar[TestTime | None] = None

    def __init__(self, hparams: Any = None, *, inference: dict[str, Any] | None = None, **overrides: Any) -> None:
        base = hparams if hparams is not None else self.default_hparams
        self.hp = self._apply(base, overrides, keep_none=True) if base is not None else None
        self.inference: dict[str, Any] = self.inference_config(inference or {})

    # inference-time identity ----------------------------------------------------------------------
    @classmethod
    def inference_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The defense's full inference settings: its declared defaults with ``values`` applied, each checked."""
        return cls.inference_params.config(values, owner=f"defense '{cls.name}'",
                                           label=lambda key: f"Parameter {key} (--set {cls.name}.{key}=VALUE)")

    @classmethod
    def acts_at_inference(cls) -> bool:
        """Whether the defense does more at inference than load weights: it declares inference parameters, wraps
        the classifier or loads its model its own way. Such a defense's name and settings are part of the id."""
        return bool(cls.inference_params) or cls.wrap_classifier is not Defense.wrap_classifier \
            or cls.load is not Defense.load or cls.test_time is not None

    def inference_identity(self) -> dict[str, Any] | None:
        """What, besides the tensors, changes this defense's predictions: ``{"defense": name, "params": {...}}``
        for a defense that acts at inference, None for one that only loads weights (its id is its tensors)."""
        if not self.acts_at_inference():
            return None
        return {"defense": self.name, "params": dict(self.inference)}


    # hyper-parameters -----------------------------------------------------------------------------
    def _apply(self, base: Any, overrides: dict[str, Any], keep_none: bool = False) -> Any:
        """``base`` with ``overrides``; None values are ignored unless ``keep_none`` (explicit constructor args)."""
        given = {k: v for k, v in overrides.items() if keep_none or v is not None}
        if not given:
            return base
        known = {f.name for f in fields(base)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ZsrError(
                f"Defense '{self.name}' has no hyper-parameter {', '.join(unknown)}; "
                f"its hyper-parameters are: {', '.join(sorted(known))}."
            )
        return replace(base, **given)

    def hparams(self, **overrides: Any) -> Any:
        if self.default_hparams is None:
            return None
        base = getattr(self, "hp", None) or self.default_hparams
        return self._apply(base, overrides)

    def hparams_dict(self, hp: Any = None) -> dict[str, Any]:
        hp = (getattr(self, "hp", None) or self.default_hparams) if hp is None else hp
        return json.loads(json.dumps(asdict(hp))) if is_dataclass(hp) else {}

    # training -------------------------------------------------------------------------------------
    def text_prompts(self, classnames: tuple[str, ...] | list[str], info_prompts: list[list[str]]) -> dict[str, list[list[str]]]:
        """The prompt sets whose text embeddings the loss needs; ``"class"`` is the classification head."""
        template = getattr(self.hp, "template", None)
        if template is None:
            return {"class": info_prompts}
        return {"class": [[template.format(c)] for c in classnames]}

    def make_adversary(self, device: torch.device | str, generator: torch.Generator | None = None) -> Adversary:
        """The training adversary; with a ``reseed_training_attack`` hyper-parameter set, it re-seeds
        ``generator`` with its run seed (``generator.initial_seed()``) before every attack."""
        hp = self.hp
        reseed = None
        if getattr(hp, "reseed_training_attack", False) and generator is not None:
            reseed = generator.initial_seed()
        return Adversary(
            eps=hp.eps / 255.0, step=hp.attack_step / 255.0, steps=int(hp.attack_steps), momentum=hp.attack_momentum,
            random_start=hp.attack_random_start, generator=generator, enabled=hp.attack != "none", reseed=reseed,
        )

    def loss(self, batch: Any, model: Any, frozen: Any, adversary: Adversary) -> LossOutput:
        raise ZsrError(f"Defense '{self.name}' is not trainable (it has no training loss).")

    def describe_training(self) -> dict[str, Any]:
        return {"defense": self.name, "paper": self.paper, "hparams": self.hparams_dict(),
                "quirks": dict(self.quirks), "notes": list(self.notes)}

    # loading --------------------------------------------------------------------------------------
    def wrap_classifier(self, clf: torch.nn.Module) -> torch.nn.Module:
        """The classifier attacks see: ``clf`` (images in [0,1] → logits) by default. A defense that acts on the
        input or the logits around the CLIP classifier (a purification step, a randomised transform, a logit
        transform) returns a module wrapping ``clf``; the runner and the audit attack what this returns. A defense
        that declares :attr:`test_time` gets :meth:`defend` run as a
        :class:`~zsrbench.defenses.test_time.TestTimeClassifier` (its own generator, BPDA, the bare ``clf`` for
        non-adaptive attacks)."""
        if self.test_time is not None:
            return TestTimeClassifier(clf, self.defend, self.test_time)
        return clf

    def defend(self, x: torch.Tensor, clf: torch.nn.Module, generator: torch.Generator) -> torch.Tensor:
        """A test-time defense's procedure: the logits of images ``x`` (in [0,1]) through the bare zero-shot
        classifier ``clf``, drawing any randomness from ``generator``; every declared non-differentiable step goes
        through :func:`~zsrbench.defenses.test_time.bpda`."""
        raise ZsrError(f"Defense '{self.name}' declares test-time steps but no procedure (defend).")

    def load(self, spec: LoadSpec, *, device: str = "cpu") -> CLIPParts:
        """The model to evaluate: the base CLIP with this defense's visual weights (if a checkpoint is given).

        ``checkpoint`` may be a published checkpoint's catalogue name (``fare2-clip``, see
        :mod:`zsrbench.models.catalogue`; downloaded on first use, cached, sha256 checked), a folder written by
        ``zsrbench train`` (or ``local-dir:<folder>``), an ``hf-hub:`` id, or a visual-encoder state-dict file; a
        ``cache:<path>`` name (as result records write a folder in zsrbench's cache) is that path in the cache.
        """
        return load_checkpoint(spec, device=device, defense=self.name, trainable=self.trainable)


def instantiate(cls: type[Defense], inference: dict[str, Any] | None = None) -> Defense:
    """An instance of the registered defense class ``cls`` with its inference settings (checked)."""
    defense = cls()
    defense.inference = cls.inference_config(inference or {})
    return defense
