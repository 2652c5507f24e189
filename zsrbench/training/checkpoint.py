"""Training checkpoints: everything a run needs to continue exactly (weights, optimiser, schedule, GradScaler, every
RNG state, the step and the position in the epoch's order), written atomically, read back and checked."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from zsrbench.errors import ZsrError


CHECKPOINT_DIR = "checkpoints"


CHECKPOINT_FILE = "last.pt"


def rng_state(adversary_gen: torch.Generator | None) -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if adversary_gen is not None:
        state["adversary"] = adversary_gen.get_state()
    return state


def set_rng_state(state: dict[str, Any], adversary_gen: torch.Generator | None) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if adversary_gen is not None and "adversary" in state:
        adversary_gen.set_state(state["adversary"])


def read_checkpoint(path: Path) -> dict[str, Any]:
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


def save_checkpoint(job: Any, built: Any, opt: Any, run: Any) -> None:
    """Write the run's state to its checkpoint (atomically; a folder this run created is removed again if the
    write fails)."""
    from zsrbench.training.outputs import atomic, writing

    step = run.step
    blob = {
        "format": "zsrbench-train-checkpoint", "version": 1, "fingerprint": job.fingerprint,
        "base_visual_sha256": built.base_digest, "step": step, "epoch": step // built.bpe,
        "batch_in_epoch": step % built.bpe, "visual": built.visual.state_dict(),
        "optimizer": opt.optimizer.state_dict(), "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict() if opt.scaler is not None else None, "rng": rng_state(opt.adv_gen),
        "curve": run.curve, "resumed_from": run.resumed_from,
    }
    path = job.checkpoint_path
    with writing(job.out, job.created, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic(path, lambda tmp: torch.save(blob, tmp))


def resume(job: Any, built: Any, opt: Any, run: Any) -> None:
    """Continue from the folder's last checkpoint when there is one (and ``job.resume``): weights, optimiser,
    schedule, GradScaler, every RNG state, the step and the loss curve; a checkpoint of another run is an error."""
    path = job.checkpoint_path
    if not (job.resume and path.is_file()):
        return
    state = read_checkpoint(path)
    if state.get("fingerprint") != job.fingerprint:
        raise ZsrError(f"{path} belongs to a different training run (other defense, hyper-parameters, protocol, model or "
                       "seed). Use another --out folder, or pass --no-resume to start over here.")
    if state.get("base_visual_sha256") != built.base_digest:
        raise ZsrError(f"{path} was trained from different base weights than {job.model_name}; cannot resume.")
    built.visual.load_state_dict(state["visual"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if opt.scaler is not None and state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], opt.adv_gen)
    run.step, run.curve = int(state["step"]), list(state["curve"])
    run.resumed_from = list(state.get("resumed_from", [])) + [run.step]
