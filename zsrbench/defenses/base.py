"""The defense interface: how a defense is loaded for evaluation and, for trained ones, what it optimises.

A trained defense declares its hyper-parameters as a frozen dataclass (a subclass of :class:`TrainHparams`, the
settings the one training loop in :mod:`zsrbench.training` reads: optimiser, schedule, training adversary,
precision) and implements :meth:`Defense.loss`, a pure function of the batch, the model being fine-tuned, the
frozen original and the training adversary. The loop never knows a defense by name.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F

from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts, build_clip
from zsrbench.models.weights import sha256_file
from zsrbench.params import Params
from zsrbench.models.weights import check_model_folder, check_sha256_text

TECOA_TEMPLATE = "This is a photo of a {}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LoadSpec:
    """What the user asked to load: an open_clip model (+ pretrained tag) and optionally a checkpoint."""

    model: str
    pretrained: str | None = None
    checkpoint: str | None = None  # a file, a local-dir: folder, a zsrbench train folder, or a catalogue name
    checkpoint_sha256: str | None = None
    trust_checkpoint: bool = False
    allow_download: bool = True  # catalogue checkpoints: download when not cached (False: cache only)


@dataclass(frozen=True)
class TrainHparams:
    """Settings every trained defense has; the training loop reads only these (never a defense's name).

    Sizes of the adversary (``eps``, ``attack_step``) are in units of 1/255.
    """

    # optimisation
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 1e-5
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 128
    epochs: int | None = 10
    steps: int | None = None  # when set, the budget in optimiser steps (overrides epochs)
    warmup_steps: int = 1000  # linear warm-up lr*(s+1)/warmup, then cosine to 0 (the TeCoA/open_clip schedule)
    schedule: str = "cosine"  # "cosine" | "constant"
    drop_last: bool = False
    precision: str = "amp"  # "amp" (bf16 autocast on CUDA), "amp-fp16" (fp16 + GradScaler), "fp32"; CPU: fp32
    # training adversary (spec §1; FARE overrides)
    attack: str = "pgd"  # "pgd" (sign / momentum-sign L∞ PGD on the defense's objective) | "none"
    eps: float = 1.0
    attack_step: float = 1.0
    attack_steps: int = 2
    attack_momentum: float = 0.0  # 0: plain sign-PGD; >0: RobustVLM momentum rule v <- sign(μv + sign(g))
    attack_random_start: bool = True
    # how training images reach the model (builders holding tensors, e.g. synthetic, ignore it):
    #  "resize256-crop": Resize(S·256/224, bilinear) + CenterCrop(S), S = input size (TeCoA/PMG-AFT/TGA-ZSR code)
    #  "resize-crop":    Resize(S, bicubic) + CenterCrop(S) (open_clip preprocessing; FARE)
    #  "dataset":        the dataset's own evaluation handling (e.g. Tiny-ImageNet native 64 px, upsampled inside)
    train_input: str = "resize256-crop"
    # the classifier used during training
    template: str | None = TECOA_TEMPLATE  # None: the training set's own prompts (info.prompts())
    train_logit_scale: float = 100.0
    train_normalization: str = "clip"  # "clip" | "imagenet" (PMG-AFT's original code)

    def validate(self) -> None:
        """Every choice is a known one and every number finite and in its range (checked before anything is
        built or written)."""
        choices = (("optimizer", ("sgd", "adamw")), ("schedule", ("cosine", "constant")),
                   ("precision", ("amp", "amp-fp16", "fp32")), ("attack", ("pgd", "none")),
                   ("train_input", ("resize256-crop", "resize-crop", "dataset")),
                   ("train_normalization", ("clip", "imagenet")))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ZsrError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got "
                               f"{getattr(self, name)!r}; pass one of them with --set {name}=VALUE.")
        check_finite_numbers(self)
        for name, ok, rule in RANGES:
            value = getattr(self, name)
            if value is None and name in ("epochs", "steps"):  # one of the two budgets may be unset
                continue
            if value is None or not ok(value):
                raise out_of_range(name, value, rule)
        if self.steps is None and self.epochs is None:
            raise ZsrError("Set a training budget: --epochs N or --steps N (N >= 1).")
        if not all(0 <= b < 1 for b in self.adam_betas) or len(self.adam_betas) != 2:
            raise out_of_range("adam_betas", self.adam_betas, "two numbers in [0, 1), e.g. 0.9,0.999")
        if self.attack == "pgd" and not (self.eps > 0 and self.attack_step > 0 and self.attack_steps >= 1):
            raise ZsrError(f"The training attack needs eps > 0, attack_step > 0 and attack_steps >= 1 (got "
                           f"{self.eps}, {self.attack_step}, {self.attack_steps}); set them, or --set attack=none.")

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) to use in training instead of the model's own, or None for the model's (CLIP)."""
        return (IMAGENET_MEAN, IMAGENET_STD) if self.train_normalization == "imagenet" else None


# (name, valid?, the rule in words) for TrainHparams' numbers; None (where allowed) is not checked
RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("lr", lambda v: v > 0, "> 0 (e.g. 1e-5)"),
    ("momentum", lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0.9)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("epochs", lambda v: v >= 1, "an integer >= 1"),
    ("steps", lambda v: v >= 1, "an integer >= 1"),
    ("warmup_steps", lambda v: v >= 0, "an integer >= 0"),
    ("eps", lambda v: 0 <= v <= 255, "in [0, 255] (units of 1/255, e.g. 1 or 4)"),
    ("attack_step", lambda v: 0 <= v <= 255, "in [0, 255] (units of 1/255, e.g. 1)"),
    ("attack_steps", lambda v: v >= 0, "an integer >= 0"),
    ("attack_momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("train_logit_scale", lambda v: v > 0, "> 0 (e.g. 100)"),
)


TRAIN_OPTIONS = ("lr", "eps", "steps", "epochs", "batch_size")  # hyper-parameters `zsrbench train` has options for


def out_of_range(name: str, value: Any, rule: str) -> ZsrError:
    how = f"--{name.replace('_', '-')} VALUE" if name in TRAIN_OPTIONS else f"--set {name}=VALUE"
    return ZsrError(f"Hyper-parameter {name} must be {rule}, got {value!r}. Pass a valid value ({how}).")


def check_finite_numbers(hp: Any) -> None:
    """Every float hyper-parameter (also inside tuples) of the dataclass ``hp`` is finite: NaN or inf would
    silently train nonsense (NaN compares false with every bound)."""
    for f in fields(hp):
        value = getattr(hp, f.name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise out_of_range(f.name, value, "a finite number")


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


def _set_requires_grad(module: torch.nn.Module, flags: list[bool] | bool) -> list[bool]:
    params = list(module.parameters())
    before = [p.requires_grad for p in params]
    for p, f in zip(params, flags if isinstance(flags, list) else [flags] * len(params)):
        p.requires_grad_(f)
    return before


@dataclass
class Adversary:
    """The training adversary: L∞ sign-PGD (optionally with RobustVLM's momentum) on an objective to maximise.

    ``perturb(model, x, objective)`` returns the last iterate; ``objective(x_adv)`` is a scalar to ascend.
    ``adversary(model, x, y)`` is spec §1: cross-entropy on ``model(x_adv)`` logits. The model is put in eval
    mode during the attack and its parameters do not require grad, so no parameter gradient is computed or
    accumulated (nothing can leak into the training step). Sizes are in pixel units ([0,1] images).

    ``reseed`` (None by default: a fresh random start for every attack) re-seeds ``generator`` with that seed
    before every attack, so attacks on batches of the same shape start from the same random point (a quirk of
    the official Comp-TGA code, which re-seeds the global RNG before every training attack).
    """

    eps: float
    step: float
    steps: int
    momentum: float = 0.0
    random_start: bool = True
    generator: torch.Generator | None = None
    enabled: bool = True
    reseed: int | None = None

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        from zsrbench.attacks.pgd import project, random_start

        x = x.detach()
        if not self.enabled:
            return x
        was_training = model.training
        flags = _set_requires_grad(model, False)
        model.eval()
        try:
            if self.random_start:
                gen = self.generator
                if gen is None or gen.device.type != x.device.type:
                    raise ValueError("the adversary's generator must live on the batch's device")
                if self.reseed is not None:
                    gen.manual_seed(int(self.reseed))
                xa = random_start(x, self.eps, gen)
            else:
                xa = x.clone()
            velocity = torch.zeros_like(x)
            for _ in range(int(self.steps)):
                xi = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    loss = objective(xi)
                    grad = torch.autograd.grad(loss, xi)[0]
                grad = torch.nan_to_num(grad.float(), nan=0.0)
                # RobustVLM: v <- sign(μ v + sign(g)); μ = 0 is plain sign-PGD
                velocity = torch.sign(self.momentum * velocity + torch.sign(grad))
                xa = project(xi.detach() + self.step * velocity.to(xi.dtype), x, self.eps)
        finally:
            _set_requires_grad(model, flags)
            model.train(was_training)
        return xa.detach()

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.perturb(model, x, lambda xa: F.cross_entropy(model(xa).float(), y))

    def describe(self) -> dict[str, Any]:
        return {"eps": self.eps, "step": self.step, "steps": self.steps, "momentum": self.momentum,
                "random_start": self.random_start, "enabled": self.enabled, "reseed": self.reseed}


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
            or cls.load is not Defense.load

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
        transform) returns a module wrapping ``clf``; the runner and the audit attack what this returns."""
        return clf

    def load(self, spec: LoadSpec, *, device: str = "cpu") -> CLIPParts:
        """The model to evaluate: the base CLIP with this defense's visual weights (if a checkpoint is given).

        ``checkpoint`` may be a published checkpoint's catalogue name (``fare2-clip``, see
        :mod:`zsrbench.models.catalogue`; downloaded on first use, cached, sha256 checked), a folder written by
        ``zsrbench train`` (or ``local-dir:<folder>``), an ``hf-hub:`` id, or a visual-encoder state-dict file; a
        ``cache:<path>`` name (as result records write a folder in zsrbench's cache) is that path in the cache.
        """
        model, checkpoint = spec.model, spec.checkpoint
        if checkpoint is not None and str(checkpoint).startswith("cache:"):
            from zsrbench.paths import resolve_portable

            checkpoint = resolve_portable(str(checkpoint))
        if checkpoint is not None:
            from zsrbench.models import catalogue

            entry = catalogue.lookup(str(checkpoint))
            if entry is not None:
                if self.trainable and entry.defense != self.name:
                    raise ZsrError(
                        f"Checkpoint '{entry.name}' is a published {entry.defense} checkpoint, not {self.name}. "
                        f"Use --defense {entry.defense} (or --defense clip to evaluate it without a label)."
                    )
                return catalogue.load(entry, device=device, allow_download=spec.allow_download,
                                      expected_sha256=spec.checkpoint_sha256)
        if checkpoint is not None and str(checkpoint).startswith("local-dir:"):
            return _load_folder(Path(str(checkpoint).split(":", 1)[1]), device=device, expected=spec.checkpoint_sha256)
        if checkpoint is not None and Path(checkpoint).is_dir():
            return _load_folder(Path(checkpoint), device=device, expected=spec.checkpoint_sha256)
        if checkpoint is not None and str(checkpoint).startswith("hf-hub:"):
            if spec.checkpoint_sha256:
                raise ZsrError(
                    f"--checkpoint-sha256 cannot be checked for {checkpoint}: open_clip downloads it itself. Download "
                    "the repository (`huggingface-cli download ORG/REPO --local-dir DIR`) and pass --checkpoint DIR, "
                    "or drop --checkpoint-sha256."
                )
            return build_clip(str(checkpoint), None, device=device)
        return build_clip(
            model, spec.pretrained, checkpoint=checkpoint, checkpoint_sha256=spec.checkpoint_sha256,
            trust_checkpoint=spec.trust_checkpoint, device=device,
        )


def instantiate(cls: type[Defense], inference: dict[str, Any] | None = None) -> Defense:
    """An instance of the registered defense class ``cls`` with its inference settings (checked)."""
    defense = cls()
    defense.inference = cls.inference_config(inference or {})
    return defense


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` ``zsrbench train`` wrote into ``folder`` (None when there is none)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    from zsrbench.jsonio import read

    try:
        manifest = read(path, "training manifest")
    except ZsrError as exc:
        raise ZsrError(f"{exc} The training output is damaged: restore the file or re-run `zsrbench train`.") from None
    if not isinstance(manifest, dict):
        raise ZsrError(f"{path} is not a zsrbench training manifest (a JSON object); restore it or re-run "
                       "`zsrbench train`.")
    return manifest


def _verify_manifest_weights(folder: Path, manifest: dict[str, Any]) -> None:
    """The weights file the manifest names exists and has the sha256 it records."""
    name, want = manifest.get("weights_file"), manifest.get("weights_sha256")
    if not name:
        return
    wfile = folder / str(name)
    if not wfile.is_file():
        raise ZsrError(f"{folder}/manifest.json names the weights file {name}, but it is missing. Restore it (copy "
                       "the whole folder again) or re-run `zsrbench train`.")
    got = sha256_file(wfile) if want else None
    if got != want:
        raise ZsrError(
            f"{wfile} has sha256 {got}, but its manifest says {want}: the weights changed after training. "
            "Re-run `zsrbench train` or restore the file."
        )


def _load_folder(folder: Path, *, device: str, expected: str | None = None) -> CLIPParts:
    """An open_clip ``local-dir`` folder; when ``zsrbench train`` wrote it, its manifest's sha256 is verified."""
    want = check_sha256_text(expected) if expected else None
    if not folder.is_dir():
        raise ZsrError(f"Model folder {folder} does not exist; pass a folder written by `zsrbench train`.")
    check_model_folder(folder)
    manifest = _read_manifest(folder)
    if manifest is not None:
        _verify_manifest_weights(folder, manifest)
    parts = build_clip(f"local-dir:{folder}", None, device=device)
    got = parts.source.get("weights_sha256")
    if want and got != want:
        raise ZsrError(f"Weights in {folder} have sha256 {got}, but {want} was expected: the folder holds other "
                       "weights than the ones you named. Copy the right folder, or drop --checkpoint-sha256.")
    if manifest is not None:
        _record_training(parts, manifest)
    return parts


def _record_training(parts: CLIPParts, manifest: dict[str, Any]) -> None:
    parts.source["trained_by_zsrbench"] = {
        k: manifest.get(k) for k in ("defense", "protocol", "train_dataset", "seed", "steps", "weights_sha256")
    }
    # every training choice (quirks included) travels into the result records
    parts.source["hparams"] = dict(manifest.get("hparams") or {})
    parts.source["base_architecture"] = (manifest.get("base_model") or {}).get("architecture")
    parts.source.setdefault("notes", []).extend(str(n) for n in manifest.get("notes") or [])
