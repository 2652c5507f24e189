"""A training run before anything is built: the defense with the protocol's recipe under the caller's
hyper-parameters, every value checked, the device and precision, the output folder (:func:`plan`); then the
models and data it trains on (:func:`build`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from zsrbench.errors import ZsrError


def coerce(hp_cls: type, key: str, value: Any) -> Any:
    """Convert a CLI string to the hyper-parameter's declared type (bool/int/float/tuple/str, or None)."""
    if not isinstance(value, str):
        return value
    kind = str(hp_cls.__dataclass_fields__[key].type)
    v = value.strip()
    if v.lower() in ("none", "null") and "None" in kind:
        return None
    try:
        if kind.startswith("bool"):
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(v)
        if kind.startswith("int"):
            return int(v)
        if kind.startswith("float"):
            return float(v)
        if kind.startswith("tuple"):
            return tuple(float(p) for p in v.strip("()").split(","))
    except ValueError as exc:
        raise ZsrError(f"Hyper-parameter {key} expects {kind}; cannot read {value!r}.") from exc
    return v


def is_trainable(registry: Any, name: str) -> bool:
    try:
        return bool(getattr(registry.get(name), "trainable", False))
    except ZsrError:  # a plugin entry that does not load
        return False


def make_defense(registry: Any, defense_name: str, proto: Any, given: dict[str, Any]) -> Any:
    """The defense with the protocol's recipe under the caller's hyper-parameters, validated."""
    from dataclasses import replace

    defense_cls = registry.get(defense_name)
    if not getattr(defense_cls, "trainable", False):
        trainable = [n for n in registry.names() if is_trainable(registry, n)]
        raise ZsrError(f"Defense '{defense_name}' cannot be trained. Trainable defenses: {', '.join(trainable)}.")
    given = dict(given)
    # one budget: steps given → epochs unused; epochs given (and no steps) → the default step budget is dropped
    if given.get("steps") is not None and "epochs" not in given:
        given["epochs"] = None
    if given.get("epochs") is not None and "steps" not in given:
        given["steps"] = None
    # the protocol's shared recipe (every defense it fine-tunes uses it) under what the caller gives
    overrides = {**proto.train_recipe, **given}
    hp_cls = type(defense_cls.default_hparams)
    known = {f.name for f in fields(hp_cls)}
    overrides = {k: (coerce(hp_cls, k, v) if k in known else v) for k, v in overrides.items()}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ZsrError(f"Defense '{defense_name}' has no hyper-parameter {', '.join(unknown)}; "
                       f"its hyper-parameters are: {', '.join(sorted(known))}.")
    defense = defense_cls(replace(defense_cls.default_hparams, **overrides))
    defense.hp.validate()
    return defense


def check_loop_args(**values: int | None) -> None:
    """The loop's own numbers: ``num_workers`` >= 0, the others (checkpoint/stop intervals) >= 1 when given."""
    for name, value in values.items():
        low = 0 if name == "num_workers" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            option = f"--{name.replace('_', '-')}" if name in ("checkpoint_every", "num_workers") else name
            raise ZsrError(f"{option} must be an integer >= {low}, got {value!r}. Pass a valid value.")


def check_train_data(proto: Any, data_root: str | Path | None) -> None:
    """The protocol has a training set and, when it is read from disk, a data root (before any model is built)."""
    from zsrbench.registry import DATASETS

    if not getattr(proto, "train_dataset", None):
        raise ZsrError(f"Protocol '{proto.name}' names no training set (train_dataset); pick a protocol that does, "
                       "e.g. tga16 (Tiny-ImageNet) or synthetic.")
    if not getattr(DATASETS.get(proto.train_dataset), "needs_root", False):
        return
    if data_root is None and getattr(proto, "needs_data_root", True):
        raise ZsrError(f"Training under protocol '{proto.name}' reads {proto.train_dataset} from disk: pass "
                       "--data-root DIR (the folder holding it; `zsrbench data check --data-root DIR` shows what is "
                       "found), or train under --protocol micro or synthetic.")
    from zsrbench.data.layout import dataset_root, require_usable_root

    require_usable_root(data_root)  # a name or path the filesystem cannot look up
    root = dataset_root(data_root, proto.train_dataset)  # resolves a '/data/{dataset}' template
    if root is not None and not root.is_dir():
        raise ZsrError(f"Data root {root} is not an existing folder. Pass --data-root the folder that holds "
                       f"{proto.train_dataset}.")


def device_of(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZsrError("--device cuda was requested but no CUDA device is available; use --device cpu.")
    return dev


def precision_of(hp_precision: str, device: torch.device) -> tuple[str, torch.dtype | None, bool]:
    """(precision used, autocast dtype or None, use GradScaler)."""
    if device.type != "cuda" or hp_precision == "fp32":
        return "fp32", None, False
    if hp_precision == "amp-fp16" or not torch.cuda.is_bf16_supported():
        return "amp-fp16", torch.float16, True
    return "amp-bf16", torch.bfloat16, False


@dataclass
class Job:
    """A checked training request: what to train, where, how; nothing is built yet."""

    defense: Any
    hp: Any
    proto: Any
    out: Path
    created: Path | None  # the topmost folder this run creates (removed again if a write fails)
    model_name: str
    pretrained: str | None
    data_root: str | Path | None
    seed: int
    dev: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    use_scaler: bool
    fingerprint: dict[str, Any]
    resume: bool = True
    checkpoint_every: int | None = None
    stop_after_epochs: int | None = None
    stop_after_steps: int | None = None
    callback: Callable[[dict[str, Any]], None] | None = None
    num_workers: int = 0
    keep_checkpoints: bool = True
    text_cache: bool | Path = False
    progress: bool = False
    determinism: dict[str, Any] | None = None

    @property
    def checkpoint_path(self) -> Path:
        from zsrbench.training.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE

        return self.out / CHECKPOINT_DIR / CHECKPOINT_FILE

    @property
    def manifest_path(self) -> Path:
        from zsrbench.training.outputs import MANIFEST_FILE

        return self.out / MANIFEST_FILE


def plan(defense_name: str, *, protocol: str | Any = "tga16", model: str | None = None,
         pretrained: str | None = "__protocol__", data_root: str | Path | None = None, out_dir: str | Path,
         hparams: dict[str, Any] | None = None, steps: int | None = None, epochs: int | None = None,
         batch_size: int | None = None, lr: float | None = None, eps: float | None = None, seed: int = 0,
         device: str | torch.device = "cpu", resume: bool = True, checkpoint_every: int | None = None,
         stop_after_epochs: int | None = None, stop_after_steps: int | None = None,
         callback: Callable[[dict[str, Any]], None] | None = None, num_workers: int = 0,
         keep_checkpoints: bool = True, text_cache: bool | Path = False, progress: bool = False,
         determinism: dict[str, Any] | None = None, **hparam_overrides: Any) -> Job:
    """Check every value of a training request before anything is built or written (see
    :func:`zsrbench.training.loop.train_defense` for the arguments)."""
    from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
    from zsrbench.training.outputs import check_out_dir

    load_builtins()
    out = Path(out_dir)
    proto = PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    given = {**(hparams or {}), **hparam_overrides}
    for key, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("eps", eps)):
        if value is not None:
            given[key] = value
    defense = make_defense(DEFENSES, defense_name, proto, given)
    check_loop_args(checkpoint_every=checkpoint_every, num_workers=num_workers, stop_after_epochs=stop_after_epochs,
                    stop_after_steps=stop_after_steps)
    check_train_data(proto, data_root)
    created = check_out_dir(out)  # before anything is built or written
    model_name = model or proto.default_model
    if pretrained == "__protocol__":
        pretrained = proto.default_pretrained if model is None else None
    dev = device_of(device)
    precision, amp_dtype, use_scaler = precision_of(defense.hp.precision, dev)
    fingerprint = {
        "defense": defense.name, "hparams": defense.hparams_dict(), "protocol": proto.name,
        "protocol_version": getattr(proto, "version", None), "train_dataset": proto.train_dataset,
        "model": model_name, "pretrained": pretrained, "seed": int(seed), "precision": precision,
    }
    return Job(defense=defense, hp=defense.hp, proto=proto, out=out, created=created, model_name=model_name,
               pretrained=pretrained, data_root=data_root, seed=int(seed), dev=dev, precision=precision,
               amp_dtype=amp_dtype, use_scaler=use_scaler, fingerprint=fingerprint, resume=resume,
               checkpoint_every=checkpoint_every, stop_after_epochs=stop_after_epochs,
               stop_after_steps=stop_after_steps, callback=callback, num_workers=num_workers,
               keep_checkpoints=keep_checkpoints, text_cache=text_cache, progress=progress, determinism=determinism)


def finished(job: Job) -> dict[str, Any] | None:
    """The manifest of a completed run of exactly this request in ``job.out`` (resumed: nothing to do), else None;
    without ``resume`` the folder's last checkpoint and manifest are removed first."""
    import json

    from zsrbench.training.outputs import digest, writing

    if job.resume and job.manifest_path.is_file():
        try:
            done = json.loads(job.manifest_path.read_text())
        except (OSError, ValueError):
            done = None
        if isinstance(done, dict) and done.get("fingerprint_sha256") == digest(job.fingerprint) and done.get("completed"):
            return done
    if not job.resume:
        with writing(job.out, job.created):
            for stale in (job.checkpoint_path, job.manifest_path):
                if stale.exists():
                    stale.unlink()
    return None


@dataclass
class Built:
    """The models and data a run trains on."""

    parts: Any
    visual: torch.nn.Module  # trained
    frozen_visual: torch.nn.Module  # the original, never changed
    base_digest: str
    base_architecture: str  # what the manifest names as the base (a model id's architecture)
    pretrained: str | None
    train_set: Any
    prompt_sets: dict[str, list[list[str]]]
    texts: dict[str, torch.Tensor]
    clf: torch.nn.Module
    frozen: torch.nn.Module
    n: int
    bpe: int  # batches per epoch
    total: int  # optimiser steps


def build(job: Job) -> Built:
    """The base CLIP (the trained visual encoder and its frozen copy), the training set and the text heads."""
    import copy

    from zsrbench.models import catalogue, zoo_fetch
    from zsrbench.models.classifier import ZeroShotClassifier, text_head
    from zsrbench.models.clip import build_clip
    from zsrbench.registry import DATASETS
    from zsrbench.training.batches import batches_per_epoch, train_transform
    from zsrbench.training.outputs import state_digest

    hp, dev = job.hp, job.dev
    torch.manual_seed(job.seed)  # random-init configs (zsr-tiny) are then reproducible
    model_name, pretrained, base_architecture = job.model_name, job.pretrained, job.model_name
    entry = catalogue.lookup(model_name)
    if entry is not None:
        folder, _prov = zoo_fetch.fetch(entry)
        model_name, pretrained = f"local-dir:{folder}", None
        base_architecture = entry.architecture  # not the cache folder it was fetched into
    parts = build_clip(model_name, pretrained, device=dev)
    parts.model.requires_grad_(False)
    visual = parts.visual
    frozen_visual = copy.deepcopy(visual).eval().requires_grad_(False)
    visual.requires_grad_(True)
    tf = train_transform(hp.train_input, parts.image_size)
    train_set = DATASETS.get(job.proto.train_dataset).build(job.data_root, image_size=parts.image_size, split="train",
                                                            **({"transform": tf} if tf is not None else {}))
    n = len(train_set)
    if n == 0:
        raise ZsrError(f"The training set {job.proto.train_dataset} is empty (root {job.data_root}).")
    info = train_set.info
    prompt_sets = job.defense.text_prompts(tuple(info.classnames), info.prompts())
    texts = {k: text_head(parts, v, device=dev, cache=job.text_cache)[0].float() for k, v in prompt_sets.items()}
    norm = hp.normalization()
    mean, std = norm if norm is not None else (parts.mean, parts.std)
    clf = ZeroShotClassifier(visual, texts["class"], image_size=parts.image_size, logit_scale=hp.train_logit_scale,
                             mean=mean, std=std).to(dev)
    frozen = ZeroShotClassifier(frozen_visual, texts["class"], image_size=parts.image_size,
                                logit_scale=hp.train_logit_scale, mean=mean, std=std).to(dev).eval()
    bpe = batches_per_epoch(n, hp.batch_size, hp.drop_last)
    if bpe == 0:
        raise ZsrError(f"batch_size {hp.batch_size} is larger than the training set ({n} images) with drop_last.")
    total = int(hp.steps) if hp.steps is not None else int(hp.epochs) * bpe
    return Built(parts=parts, visual=visual, frozen_visual=frozen_visual, base_digest=state_digest(frozen_visual),
                 base_architecture=base_architecture, pretrained=pretrained, train_set=train_set,
                 prompt_sets=prompt_sets, texts=texts, clf=clf, frozen=frozen, n=n, bpe=bpe, total=total)
