"""The one adversarial fine-tuning loop every trained defense uses.

It knows no defense by name: the defense supplies its hyper-parameters (:class:`~zsrbench.defenses.base.TrainHparams`:
optimiser, schedule, budget, training adversary, precision, training classifier) and its loss
(:meth:`~zsrbench.defenses.base.Defense.loss`). The loop

* builds the base CLIP, trains **only the visual encoder** (text tower, logit scale and the frozen copy of the
  original visual encoder never change; the class head comes from the original text tower);
* draws batches from the protocol's training set in a seeded order (one permutation per epoch);
* sets the learning rate per step (linear warm-up ``lr·(s+1)/warmup`` then cosine to 0, as TeCoA/open_clip);
* runs the loss under autocast on CUDA (bf16, or fp16 with a GradScaler) and in fp32 on CPU;
* zeroes parameter gradients between the attack and the backward pass (the adversary takes input gradients
  only, so nothing from the attack can reach the update; the original codes leave the attack's parameter
  gradients in ``.grad``, divided by the fp16 loss scale under AMP: a small, non-zero leak);
* draws the training attack's random starts from its own seeded generator (fresh per step; a defense's
  ``reseed_training_attack`` re-seeds it before every attack, as the official Comp-TGA code does);
* checkpoints every epoch (or every N steps) with model, optimiser, scheduler, GradScaler, all RNG states,
  the step and the data-order position, and resumes from the last checkpoint exactly (CPU: bit-identical);
* keeps the final weights (no selection on test data) and writes an open_clip ``local-dir`` folder
  (``open_clip_config.json`` + ``open_clip_model.safetensors`` with the FULL CLIP state dict) and a
  ``manifest.json`` (defense, hyper-parameters with quirk choices, protocol, data, seed, steps, versions,
  sha256 of the weights, the loss curve).
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from zsrbench.errors import ZsrError

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "last.pt"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class TrainResult:
    out_dir: Path
    manifest: dict[str, Any]
    completed: bool = True  # False when stopped early (stop_after_*): resume by calling again


class StopTraining(Exception):
    """Raise from a ``callback`` to stop after the current step (a checkpoint is written first)."""


# --- schedule ----------------------------------------------------------------------------------------------


def lr_at(step: int, *, base_lr: float, warmup: int, total: int, schedule: str = "cosine") -> float:
    """TeCoA/open_clip ``cosine_lr``: ``base·(s+1)/warmup`` for s < warmup, then ``½(1+cos(π·e/es))·base``."""
    if schedule == "constant":
        return base_lr
    if step < warmup:
        return base_lr * (step + 1) / warmup
    e, es = step - warmup, total - warmup
    if es <= 0:
        return base_lr
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr


class WarmupCosine:
    """The per-step learning-rate schedule as a tiny stateful object (saved in checkpoints)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, base_lr: float, warmup: int, total: int, schedule: str) -> None:
        self.optimizer, self.base_lr, self.warmup, self.total, self.schedule = optimizer, base_lr, warmup, total, schedule
        self.last_step = -1

    def set(self, step: int) -> float:
        lr = lr_at(step, base_lr=self.base_lr, warmup=self.warmup, total=self.total, schedule=self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_step = step
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "warmup": self.warmup, "total": self.total, "schedule": self.schedule,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr, self.warmup, self.total = state["base_lr"], state["warmup"], state["total"]
        self.schedule, self.last_step = state["schedule"], state["last_step"]


# --- data order --------------------------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded permutation of epoch ``epoch`` (independent of any global RNG, so resumable)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class _IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        return x, y, i


def _epoch_loader(dataset: Any, order: torch.Tensor, batch_size: int, start_batch: int, n_batches: int,
                  num_workers: int, pin: bool):
    batches = [order[b * batch_size:(b + 1) * batch_size].tolist() for b in range(start_batch, n_batches)]
    # its own generator: creating the iterator must not consume the global RNG (saved in checkpoints)
    gen = torch.Generator().manual_seed(int(order[0]) * 7 + start_batch)
    return torch.utils.data.DataLoader(_IndexedDataset(dataset), batch_sampler=batches, num_workers=num_workers,
                                       pin_memory=pin, generator=gen)


class _ToRGB:
    def __call__(self, im: Any) -> Any:
        return im.convert("RGB")


def train_transform(kind: str, size: int) -> Callable[[Any], torch.Tensor] | None:
    """PIL → [0,1] tensor for the training set (``TrainHparams.train_input``); None: the dataset's own."""
    if kind == "dataset":
        return None
    from torchvision import transforms as T

    if kind == "resize256-crop":  # torchvision's default (bilinear) Resize, as the TeCoA-family code
        resize = T.Resize(round(size * 256 / 224))
    elif kind == "resize-crop":  # open_clip's preprocessing (bicubic), as RobustVLM
        resize = T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)
    else:
        raise ZsrError(f"Unknown train_input {kind!r}.")
    return T.Compose([_ToRGB(), resize, T.CenterCrop(size), T.ToTensor()])


# --- RNG state ---------------------------------------------------------------------------------------------


def _rng_state(adversary_gen: torch.Generator | None) -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if adversary_gen is not None:
        state["adversary"] = adversary_gen.get_state()
    return state


def _set_rng_state(state: dict[str, Any], adversary_gen: torch.Generator | None) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if adversary_gen is not None and "adversary" in state:
        adversary_gen.set_state(state["adversary"])


# --- outputs -----------------------------------------------------------------------------------------------


# why a write failed, and what to do about it (other OSErrors are not the user's to fix: they propagate)
WRITE_ERRORS = {
    errno.ENAMETOOLONG: ("a name in the path is longer than the filesystem allows", "use shorter folder names"),
    errno.EACCES: ("permission denied", "pick a folder you can write to (or fix its permissions)"),
    errno.EPERM: ("operation not permitted", "pick a folder you can write to (or fix its permissions)"),
    errno.ENOSPC: ("no space left on the device", "free disk space or pick a folder on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free disk space or pick a folder on another disk"),
    errno.EROFS: ("the filesystem is read-only", "pick a folder on a writable filesystem"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "pick a path made of folders"),
}


def _write_error(out: Path, exc: OSError) -> ZsrError:
    reason, advice = WRITE_ERRORS[exc.errno]
    where = str(exc.filename or out)
    where = "" if where == str(out) else f" ({where if len(where) <= 80 else where[:80] + '…'})"
    return ZsrError(f"Cannot write the training output to {out}: {reason}{where}. Pass --out another folder: "
                    f"{advice}.")


def _first_missing(out: Path) -> Path | None:
    """The topmost folder of ``out`` that does not exist yet (what a failed run must remove), else None."""
    missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def check_out_dir(out: Path) -> Path | None:
    """``out`` must be a folder this process can create or write into, checked before anything is built.

    Returns the topmost folder a run will create (None when ``out`` exists already).
    """
    try:
        if out.exists() and not out.is_dir():
            raise ZsrError(f"--out {out} is an existing file, not a folder. Pass a folder (a new one, or one "
                           "`zsrbench train` wrote to resume it).")
        created = _first_missing(out)
        existing = out if created is None else created.parent
        if not existing.is_dir():
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        limit = os.pathconf(existing, "PC_NAME_MAX")
        for name in out.relative_to(existing).parts:
            if len(os.fsencode(name)) > limit:
                raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name[:40] + "…")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(existing))
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise _write_error(out, exc) from exc
    return created


@contextmanager
def _writing(out: Path, created: Path | None, checkpoint: Path | None = None) -> Iterator[None]:
    """Writes into ``out``: a failure the user can fix is a :class:`ZsrError`, and a folder this run created
    is removed (no partial output left behind) unless it holds a whole training ``checkpoint`` to resume from;
    an existing folder keeps what an earlier run wrote."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        kept = checkpoint is not None and checkpoint.is_file()
        if created is not None and not kept:
            shutil.rmtree(created, ignore_errors=True)
        error = _write_error(out, exc)
        if kept:
            error = ZsrError(f"{error} The last training checkpoint {checkpoint} is kept: once that is fixed, run "
                             "the same command again to resume from it.")
        raise error from exc


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename onto ``path``: the file is whole or absent (the temp file never stays)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def _read_train_checkpoint(path: Path) -> dict[str, Any]:
    """The state a training checkpoint holds (read with weights_only=True); a damaged one is a ZsrError."""
    from zsrbench.models.weights import TORCH_LOAD_ERRORS, short_error

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as exc:  # truncated or foreign file
        raise ZsrError(f"Cannot read the training checkpoint {path} ({short_error(exc)}). Delete it "
                       "or pass --no-resume to start over.") from exc
    if not isinstance(state, dict) or state.get("format") != "zsrbench-train-checkpoint":
        raise ZsrError(f"{path} is not a zsrbench training checkpoint. Delete it or pass --no-resume to start over.")
    return state


def model_config(parts: Any) -> dict[str, Any]:
    """The open_clip ``model_cfg`` of the model that was fine-tuned (written next to the weights)."""
    from zsrbench.models.clip import _open_clip

    oc = _open_clip()
    name = parts.name
    if name.startswith("local-dir:"):
        cfg = json.loads((Path(name.split(":", 1)[1]) / CONFIG_FILE).read_text())
        return copy.deepcopy(cfg.get("model_cfg", cfg))
    if name.startswith("hf-hub:"):
        from open_clip.factory import _get_hf_config

        cfg = _get_hf_config(name.split(":", 1)[1])
        return copy.deepcopy(cfg.get("model_cfg", cfg))
    cfg = oc.get_model_config(name)
    if cfg is None:
        raise ZsrError(f"No open_clip config for '{name}'; cannot write a loadable training output.")
    return copy.deepcopy(cfg)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("open_clip_torch", "numpy", "safetensors", "zsrbench"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if "zsrbench" not in out:
        import zsrbench

        out["zsrbench"] = zsrbench.__version__
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _state_digest(module: nn.Module) -> str:
    from zsrbench.models.weights import sha256_state

    return sha256_state(module.state_dict())


# --- the loop ----------------------------------------------------------------------------------------------


def _coerce(hp_cls: type, key: str, value: Any) -> Any:
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


def _trainable(registry: Any, name: str) -> bool:
    try:
        return bool(getattr(registry.get(name), "trainable", False))
    except ZsrError:  # a plugin entry that does not load
        return False


def _make_defense(registry: Any, defense_name: str, proto: Any, given: dict[str, Any]) -> Any:
    """The defense with the protocol's recipe under the caller's hyper-parameters, validated."""
    from dataclasses import replace

    defense_cls = registry.get(defense_name)
    if not getattr(defense_cls, "trainable", False):
        trainable = [n for n in registry.names() if _trainable(registry, n)]
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
    overrides = {k: (_coerce(hp_cls, k, v) if k in known else v) for k, v in overrides.items()}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ZsrError(f"Defense '{defense_name}' has no hyper-parameter {', '.join(unknown)}; "
                       f"its hyper-parameters are: {', '.join(sorted(known))}.")
    defense = defense_cls(replace(defense_cls.default_hparams, **overrides))
    defense.hp.validate()
    return defense


def _check_loop_args(**values: int | None) -> None:
    """The loop's own numbers: ``num_workers`` >= 0, the others (checkpoint/stop intervals) >= 1 when given."""
    for name, value in values.items():
        low = 0 if name == "num_workers" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            option = f"--{name.replace('_', '-')}" if name in ("checkpoint_every", "num_workers") else name
            raise ZsrError(f"{option} must be an integer >= {low}, got {value!r}. Pass a valid value.")


def _check_train_data(proto: Any, data_root: str | Path | None) -> None:
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


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZsrError("--device cuda was requested but no CUDA device is available; use --device cpu.")
    return dev


def _precision(hp_precision: str, device: torch.device) -> tuple[str, torch.dtype | None, bool]:
    """(precision used, autocast dtype or None, use GradScaler)."""
    if device.type != "cuda" or hp_precision == "fp32":
        return "fp32", None, False
    if hp_precision == "amp-fp16" or not torch.cuda.is_bf16_supported():
        return "amp-fp16", torch.float16, True
    return "amp-bf16", torch.bfloat16, False


CPU_TRAIN_THREADS = 1  # intra-op threads of training on a CPU (see pinned_threads)


@contextmanager
def pinned_threads(device: torch.device) -> Iterator[dict[str, Any]]:
    """Run training so that the same recipe and seed give bit-identical weights on any core count.

    On a CPU, matrix products and reductions split their work over the intra-op threads, and the split changes
    the order of floating-point additions: 1 and 2 threads give weights that differ in the last bits after one
    step and visibly after hundreds. Inside this block torch uses ``CPU_TRAIN_THREADS`` (1) intra-op thread, so
    the order is fixed whatever the machine's core count (restored afterwards). On a GPU nothing is changed;
    the determinism settings in force are returned for the manifest (cuDNN, deterministic algorithms, TF32,
    ``CUBLAS_WORKSPACE_CONFIG``): run-to-run identity there needs deterministic kernels, which zsrbench does not
    force. The dictionary yielded is what the manifest records under ``determinism``.
    """
    if device.type != "cpu":
        yield {"device": device.type, "cpu_intra_op_threads": torch.get_num_threads(),
               "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
               "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
               "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
               "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
               "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_TRAIN_THREADS)
    try:
        yield {"device": "cpu", "cpu_intra_op_threads": CPU_TRAIN_THREADS, "machine_threads": before,
               "rule": "training runs on one intra-op thread whatever the core count, so the order of floating-point "
                       "reductions (and the weights) do not depend on the machine's cores"}
    finally:
        torch.set_num_threads(before)


def train_defense(defense_name: str, **kwargs: Any) -> TrainResult:
    """Fine-tune CLIP's visual encoder with defense ``defense_name`` on the protocol's training set
    (:func:`_train_defense` has the arguments), with the threads pinned (:func:`pinned_threads`): the same
    recipe and seed give the same weights on any machine of the same kind."""
    with pinned_threads(_device(kwargs.get("device", "cpu"))) as determinism:
        return _train_defense(defense_name, determinism=determinism, **kwargs)


def _train_defense(
    defense_name: str,
    *,
    protocol: str | Any = "tga16",
    model: str | None = None,
    pretrained: str | None = "__protocol__",
    data_root: str | Path | None = None,
    out_dir: str | Path,
    hparams: dict[str, Any] | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    eps: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = True,
    checkpoint_every: int | None = None,
    stop_after_epochs: int | None = None,
    stop_after_steps: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    num_workers: int = 0,
    keep_checkpoints: bool = True,
    text_cache: bool | Path = False,
    progress: bool = False,
    determinism: dict[str, Any] | None = None,
    **hparam_overrides: Any,
) -> TrainResult:
    """Fine-tune CLIP's visual encoder with defense ``defense_name`` on the protocol's training set.

    ``hparams`` (or extra keyword arguments, e.g. ``alpha=0.1``) override any of the defense's hyper-parameters
    (``steps``, ``epochs``, ``batch_size``, ``lr``, ``eps`` are shortcuts; values may be CLI strings).
    ``checkpoint_every`` (steps) adds checkpoints inside epochs; one is always written at the end of every epoch. ``stop_after_epochs``/``stop_after_steps`` stop early (after a checkpoint) and
    return ``completed=False``; calling again with the same arguments resumes. A finished ``out_dir`` is
    returned as is when ``resume`` is true; ``resume=False`` starts over.
    """
    from zsrbench.registry import DATASETS, DEFENSES, PROTOCOLS, load_builtins

    load_builtins()
    out = Path(out_dir)
    proto = PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    given = {**(hparams or {}), **hparam_overrides}
    for key, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("eps", eps)):
        if value is not None:
            given[key] = value
    defense = _make_defense(DEFENSES, defense_name, proto, given)
    hp = defense.hp
    _check_loop_args(checkpoint_every=checkpoint_every, num_workers=num_workers,
                     stop_after_epochs=stop_after_epochs, stop_after_steps=stop_after_steps)
    _check_train_data(proto, data_root)
    created = check_out_dir(out)  # before anything is built or written
    model_name = model or proto.default_model
    if pretrained == "__protocol__":
        pretrained = proto.default_pretrained if model is None else None
    dev = _device(device)
    precision, amp_dtype, use_scaler = _precision(hp.precision, dev)

    fingerprint = {
        "defense": defense.name, "hparams": defense.hparams_dict(), "protocol": proto.name,
        "protocol_version": getattr(proto, "version", None), "train_dataset": proto.train_dataset,
        "model": model_name, "pretrained": pretrained, "seed": int(seed), "precision": precision,
    }
    ckpt_path = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    manifest_path = out / MANIFEST_FILE
    if resume and manifest_path.is_file():
        try:
            done = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            done = None
        if isinstance(done, dict) and done.get("fingerprint_sha256") == _digest(fingerprint) and done.get("completed"):
            return TrainResult(out, done, True)
    if not resume:
        with _writing(out, created):
            for stale in (ckpt_path, manifest_path):
                if stale.exists():
                    stale.unlink()

    # model ------------------------------------------------------------------------------------------
    from zsrbench.models import catalogue
    from zsrbench.defenses.base import TrainBatch, same_kernels
    from zsrbench.models.classifier import ZeroShotClassifier, text_head
    from zsrbench.models.clip import build_clip

    torch.manual_seed(int(seed))  # random-init configs (zsr-tiny) are then reproducible
    entry = catalogue.lookup(model_name)
    base_architecture = model_name  # what the manifest names as the base (a model id's architecture)
    if entry is not None:
        folder, _prov = catalogue.fetch(entry)
        model_name = f"local-dir:{folder}"
        pretrained = None
        base_architecture = entry.architecture  # not the cache folder it was fetched into
    parts = build_clip(model_name, pretrained, device=dev)
    clip_model = parts.model
    clip_model.requires_grad_(False)
    visual = parts.visual
    frozen_visual = copy.deepcopy(visual).eval().requires_grad_(False)
    visual.requires_grad_(True)
    base_digest = _state_digest(frozen_visual)

    # data -------------------------------------------------------------------------------------------
    builder = DATASETS.get(proto.train_dataset)
    tf = train_transform(hp.train_input, parts.image_size)
    train_set = builder.build(data_root, image_size=parts.image_size, split="train",
                              **({"transform": tf} if tf is not None else {}))
    n = len(train_set)
    if n == 0:
        raise ZsrError(f"The training set {proto.train_dataset} is empty (root {data_root}).")
    info = train_set.info
    prompt_sets = defense.text_prompts(tuple(info.classnames), info.prompts())
    texts = {k: text_head(parts, v, device=dev, cache=text_cache)[0].float() for k, v in prompt_sets.items()}
    head = texts["class"]
    norm = hp.normalization()
    mean, std = norm if norm is not None else (parts.mean, parts.std)
    clf = ZeroShotClassifier(visual, head, image_size=parts.image_size, logit_scale=hp.train_logit_scale,
                             mean=mean, std=std).to(dev)
    frozen = ZeroShotClassifier(frozen_visual, head, image_size=parts.image_size, logit_scale=hp.train_logit_scale,
                                mean=mean, std=std).to(dev).eval()

    bpe = batches_per_epoch(n, hp.batch_size, hp.drop_last)
    if bpe == 0:
        raise ZsrError(f"batch_size {hp.batch_size} is larger than the training set ({n} images) with drop_last.")
    total = int(hp.steps) if hp.steps is not None else int(hp.epochs) * bpe

    # optimisation -----------------------------------------------------------------------------------
    params = [p for p in visual.parameters() if p.requires_grad]
    if hp.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay,
                                                             betas=tuple(hp.adam_betas))
    else:
        optimizer = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    scheduler = WarmupCosine(optimizer, base_lr=hp.lr, warmup=int(hp.warmup_steps), total=total, schedule=hp.schedule)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    adv_gen = torch.Generator(device=dev).manual_seed(int(seed) + 7919)
    adversary = defense.make_adversary(dev, adv_gen)

    step, curve = 0, []
    resumed_from: list[int] = []
    if resume and ckpt_path.is_file():
        state = _read_train_checkpoint(ckpt_path)
        if state.get("fingerprint") != fingerprint:
            raise ZsrError(
                f"{ckpt_path} belongs to a different training run (other defense, hyper-parameters, protocol, "
                "model or seed). Use another --out folder, or pass --no-resume to start over here."
            )
        if state.get("base_visual_sha256") != base_digest:
            raise ZsrError(f"{ckpt_path} was trained from different base weights than {model_name}; cannot resume.")
        visual.load_state_dict(state["visual"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], adv_gen)
        step, curve = int(state["step"]), list(state["curve"])
        resumed_from = list(state.get("resumed_from", [])) + [step]

    def save_checkpoint() -> None:
        blob = {
            "format": "zsrbench-train-checkpoint", "version": 1, "fingerprint": fingerprint,
            "base_visual_sha256": base_digest, "step": step, "epoch": step // bpe, "batch_in_epoch": step % bpe,
            "visual": visual.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng": _rng_state(adv_gen),
            "curve": curve, "resumed_from": resumed_from,
        }
        with _writing(out, created, ckpt_path):
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic(ckpt_path, lambda tmp: torch.save(blob, tmp))

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from zsrbench.log import make_console

        bar = Progress(TextColumn(f"train {defense.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[loss]}"), console=make_console(stderr=True))
        task = bar.add_task("train", total=total, completed=step, loss="")
        bar.start()
    started = time.time()
    steps_this_run = epochs_this_run = 0
    stopped = False
    try:
        while step < total and not stopped:
            epoch, pos = step // bpe, step % bpe
            order = epoch_order(n, seed, epoch)
            loader = _epoch_loader(train_set.dataset, order, hp.batch_size, pos, bpe, num_workers, dev.type == "cuda")
            for xb, yb, ib in loader:
                x = xb.to(dev, non_blocking=True).float()
                y = torch.as_tensor(yb).to(dev, non_blocking=True).long()
                batch_ = TrainBatch(x=x, y=y, index=torch.as_tensor(ib), texts=texts)
                lr_now = scheduler.set(step)
                clf.train()
                frozen.eval()
                with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp_dtype is not None), \
                        same_kernels():
                    out_loss = defense.loss(batch_, clf, frozen, adversary)
                optimizer.zero_grad(set_to_none=True)  # nothing from the attack reaches the update
                loss_value = out_loss.total.float()
                if not torch.isfinite(loss_value.detach()):
                    raise ZsrError(f"The training loss became {float(loss_value)} at step {step}; lower the "
                                   "learning rate or use --precision fp32.")
                if scaler is not None:
                    scaler.scale(loss_value).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss_value.backward()
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                steps_this_run += 1
                record = {"step": step, "epoch": epoch, "lr": lr_now, "loss": float(loss_value.detach()),
                          **{k: float(v) for k, v in out_loss.terms.items()}}
                curve.append(record)
                if bar is not None:
                    bar.update(task, completed=step, loss=f"loss {record['loss']:.4f}")
                end_of_epoch = step % bpe == 0 or step >= total
                if end_of_epoch or (checkpoint_every and step % int(checkpoint_every) == 0):
                    save_checkpoint()
                if callback is not None:
                    try:
                        callback({**record, "end_of_epoch": end_of_epoch, "total_steps": total})
                    except StopTraining:
                        if not end_of_epoch:
                            save_checkpoint()
                        stopped = True
                        break
                if stop_after_steps is not None and steps_this_run >= stop_after_steps and step < total:
                    if not end_of_epoch:
                        save_checkpoint()
                    stopped = True
                    break
                epochs_this_run += int(step % bpe == 0)
                if stop_after_epochs is not None and epochs_this_run >= stop_after_epochs and step < total:
                    stopped = True
                    break
                if step >= total:
                    break
    finally:
        if bar is not None:
            bar.stop()

    if _state_digest(frozen_visual) != base_digest:  # the frozen original must never change
        raise RuntimeError("internal error: the frozen original visual encoder changed during training")
    manifest = _manifest(
        defense=defense, hp=hp, proto=proto, fingerprint=fingerprint, parts=parts, train_set=train_set,
        prompt_sets=prompt_sets, seed=seed, step=step, total=total, bpe=bpe, curve=curve, precision=precision,
        device=dev, adversary=adversary, resumed_from=resumed_from, data_root=data_root, completed=step >= total,
        elapsed=time.time() - started, base_digest=base_digest, model_name=base_architecture, pretrained=pretrained,
        determinism=determinism,
    )
    if step < total:
        return TrainResult(out, manifest, False)
    with _writing(out, created, ckpt_path):
        _write_outputs(out, parts, visual, manifest)
        if not keep_checkpoints and ckpt_path.exists():
            ckpt_path.unlink()
    return TrainResult(out, manifest, True)


def _manifest(*, defense, hp, proto, fingerprint, parts, train_set, prompt_sets, seed, step, total, bpe, curve,
              precision, device, adversary, resumed_from, data_root, completed, elapsed, base_digest, model_name,
              pretrained, determinism=None) -> dict[str, Any]:
    from zsrbench.data.base import digest_json

    return {
        "manifest_version": MANIFEST_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "completed": completed,
        "defense": defense.name,
        "paper": defense.paper,
        "hparams": defense.hparams_dict(),
        "quirks": dict(defense.quirks),
        "notes": list(defense.notes),
        "protocol": proto.name,
        "protocol_version": getattr(proto, "version", None),
        "train_dataset": proto.train_dataset,
        "train_set": {"name": train_set.info.name, "n": len(train_set), "classes": train_set.info.num_classes,
                      "split": "train", "data_root": str(data_root) if data_root is not None else None,
                      "prompts": {k: digest_json(v) for k, v in prompt_sets.items()},
                      "prompt_examples": {k: v[0] for k, v in prompt_sets.items()}},
        "base_model": {"architecture": model_name, "pretrained": pretrained, "image_size": parts.image_size,
                       "visual_sha256": base_digest, **{k: v for k, v in parts.source.items() if k != "notes"},
                       "notes": parts.source.get("notes", [])},
        "seed": int(seed),
        "steps": step,
        "total_steps": total,
        "steps_per_epoch": bpe,
        "epochs": step / bpe,
        "batch_size": hp.batch_size,
        "precision": precision,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "determinism": determinism or {},
        "adversary": adversary.describe(),
        "trained_parameters": "visual encoder (all parameters); text tower and logit scale frozen",
        "frozen_original_unchanged": True,  # verified against base_model.visual_sha256 at the end of the run
        "model_selection": "final weights (no selection on test data)",
        "resumed_at_steps": resumed_from,
        "elapsed_s_last_run": round(elapsed, 3),
        "fingerprint_sha256": _digest(fingerprint),
        "versions": _versions(),
        "argv": sys.argv[:],
        "loss_curve": curve,
    }


def _write_outputs(out: Path, parts: Any, visual: nn.Module, manifest: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from zsrbench.models.weights import sha256_file, sha256_state

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in parts.model.state_dict().items()}
    meta = {"format": "pt", "producer": "zsrbench train", "defense": manifest["defense"]}
    _atomic(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata=meta))
    cfg = {
        "model_cfg": model_config(parts),
        "preprocess_cfg": {"size": parts.image_size, "mode": "RGB", "mean": list(parts.mean), "std": list(parts.std),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
        "zsrbench": {"defense": manifest["defense"], "manifest": MANIFEST_FILE},
    }
    _atomic_write_text(out / CONFIG_FILE, json.dumps(cfg, indent=2))
    manifest["weights_file"] = WEIGHTS_FILE
    manifest["weights_sha256"] = sha256_file(out / WEIGHTS_FILE)
    manifest["visual_sha256"] = sha256_state(visual.state_dict())
    _atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=1, default=str))


TRAINING_REVISION = 2  # 2: threads pinned (pinned_threads); weights cached by revision 1 are not reused


def on_demand_key(defense_name: str, proto: Any, seed: int) -> str:
    """The 12-hex key of a defense fine-tuned on demand under ``proto``: everything that shapes its weights (the
    defense, the protocol and its version, the shared recipe, the base model and its weights' sha256, the seed,
    the training loop's revision). Shipped weights carry the key they were trained under."""
    from zsrbench.data.base import digest_json
    from zsrbench.models.clip import SHIPPED_TAG
    from zsrbench.models.weights import sha256_file

    base_weights = None
    if proto.default_pretrained == SHIPPED_TAG:  # re-trained when the shipped base model changes
        from zsrbench.models.shipped import resolve_pretrained

        base_weights = sha256_file(resolve_pretrained(proto.default_model, SHIPPED_TAG))
    return digest_json({"defense": defense_name, "protocol": proto.name, "version": proto.version,
                        "recipe": proto.train_recipe, "model": proto.default_model,
                        "pretrained": proto.default_pretrained, "base_weights": base_weights, "seed": int(seed),
                        "training": TRAINING_REVISION}).split(":")[1][:12]


def on_demand_dir(defense_name: str, proto: Any, seed: int) -> Path:
    """The cache folder of a defense fine-tuned on demand under ``proto`` (keyed by :func:`on_demand_key`)."""
    from zsrbench.paths import cache_dir

    key = on_demand_key(defense_name, proto, seed)
    return cache_dir() / "defenses" / f"{proto.name}-v{proto.version}" / f"{defense_name}-s{seed}-{key}"


def ensure_trained(defense_name: str, protocol: str | Any, *, seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """The protocol's fine-tuned ``defense_name``: trained with the protocol's shared recipe on first use, then
    taken from the cache (an interrupted training resumes). Returns the ``local-dir`` folder."""
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    proto = PROTOCOLS.get(protocol) if isinstance(protocol, str) else protocol
    if not proto.train_on_demand:
        raise ZsrError(
            f"Defense '{defense_name}' needs fine-tuned weights under protocol '{proto.name}': pass --checkpoint "
            f"(a folder written by `zsrbench train`, a visual checkpoint file, or a published checkpoint name), "
            f"or train it first: zsrbench train --defense {defense_name} --protocol {proto.name} --data-root DIR."
        )
    out = on_demand_dir(defense_name, proto, seed)
    manifest = out / "manifest.json"
    if log and not (manifest.is_file() and json.loads(manifest.read_text()).get("completed")):
        log(f"fine-tuning {defense_name} on {proto.train_dataset} with the {proto.name} recipe -> {out}")
    result = train_defense(defense_name, protocol=proto, out_dir=out, seed=seed,
                           device=device, resume=True, progress=progress, keep_checkpoints=False)
    if not result.completed:  # pragma: no cover - only a callback can stop it
        raise ZsrError(f"Fine-tuning {defense_name} did not finish; run the command again to resume it.")
    return out


# machine- and run-specific fields of a training manifest, left out of the shipped copy
UNSHIPPED_FIELDS = ("created_at", "argv", "elapsed_s_last_run", "weights_file", "weights_sha256")



def export_visual(folder: str | Path) -> bytes:
    """:func:`visual_bytes` of the visual tower of a folder written by ``zsrbench train``."""
    from safetensors.torch import load_file

    from zsrbench.models.shipped import visual_bytes

    full = load_file(str(Path(folder) / WEIGHTS_FILE))
    return visual_bytes({k.removeprefix("visual."): v for k, v in full.items() if k.startswith("visual.")})



def shipped_training(manifest: dict[str, Any]) -> dict[str, Any]:
    """A training manifest without its machine- and run-specific fields (what ships next to the weights)."""
    out = {k: v for k, v in manifest.items() if k not in UNSHIPPED_FIELDS}
    det = dict(out.get("determinism") or {})
    det.pop("machine_threads", None)
    out["determinism"] = det
    return out
