"""What a training run writes: the output folder checked before anything is built, writes that leave nothing
partial (:func:`writing`, :func:`atomic`), the open_clip ``local-dir`` folder (config + full CLIP weights) and its
``manifest.json`` (defense, hyper-parameters with quirk choices, protocol, data, seed, steps, versions, determinism,
sha256 of the weights, the loss curve), and the canonical visual-tower file of a shipped defense."""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import os
import platform
import shutil
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from zsrbench.errors import ZsrError


WEIGHTS_FILE = "open_clip_model.safetensors"


CONFIG_FILE = "open_clip_config.json"


MANIFEST_FILE = "manifest.json"


MANIFEST_VERSION = 1


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


def check_out_dir(out: Path) -> Path | None:
    """``out`` must be a folder this process can create or write into (:func:`zsrbench.paths.output_dir_problem`),
    checked before anything is built. Returns the topmost folder a run will create (None when ``out`` exists)."""
    from zsrbench.paths import check_output_dir, output_dir_problem

    bad = output_dir_problem(out)
    if bad is not None and bad.kind == "file" and bad.probe == bad.path:
        raise ZsrError(f"--out {out} is an existing file, not a folder. Pass a folder (a new one, or one "
                       "`zsrbench train` wrote to resume it).")
    if bad is not None:  # said the way every failed write of the training output is said
        code = {"name": errno.ENAMETOOLONG, "path": errno.ENAMETOOLONG, "file": errno.ENOTDIR}.get(bad.kind, errno.EACCES)
        where = bad.name[:40] + "…" if bad.kind == "name" else str(bad.probe)
        raise _write_error(out, OSError(code, os.strerror(code), where))
    return check_output_dir(out, "--out", "Training output folder")


@contextmanager
def writing(out: Path, created: Path | None, checkpoint: Path | None = None) -> Iterator[None]:
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


def atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename onto ``path``: the file is whole or absent (the temp file never stays)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic(path, lambda tmp: tmp.write_text(text))


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


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def state_digest(module: nn.Module) -> str:
    from zsrbench.models.weights import sha256_state

    return sha256_state(module.state_dict())


def manifest_of(*, defense, hp, proto, fingerprint, parts, train_set, prompt_sets, seed, step, total, bpe, curve,
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
        "fingerprint_sha256": digest(fingerprint),
        "versions": _versions(),
        "argv": sys.argv[:],
        "loss_curve": curve,
    }


def write_outputs(out: Path, parts: Any, visual: nn.Module, manifest: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from zsrbench.models.weights import sha256_file, sha256_state

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in parts.model.state_dict().items()}
    meta = {"format": "pt", "producer": "zsrbench train", "defense": manifest["defense"]}
    atomic(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata=meta))
    cfg = {
        "model_cfg": model_config(parts),
        "preprocess_cfg": {"size": parts.image_size, "mode": "RGB", "mean": list(parts.mean), "std": list(parts.std),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
        "zsrbench": {"defense": manifest["defense"], "manifest": MANIFEST_FILE},
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(cfg, indent=2))
    manifest["weights_file"] = WEIGHTS_FILE
    manifest["weights_sha256"] = sha256_file(out / WEIGHTS_FILE)
    manifest["visual_sha256"] = sha256_state(visual.state_dict())
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=1, default=str))


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


def finish(job: Any, built: Any, opt: Any, run: Any) -> tuple[dict[str, Any], bool]:
    """The run's manifest and whether it completed; a completed run writes its folder (and drops its checkpoint
    unless ``keep_checkpoints``)."""
    import time

    if state_digest(built.frozen_visual) != built.base_digest:  # the frozen original must never change
        raise RuntimeError("internal error: the frozen original visual encoder changed during training")
    manifest = manifest_of(
        defense=job.defense, hp=job.hp, proto=job.proto, fingerprint=job.fingerprint, parts=built.parts,
        train_set=built.train_set, prompt_sets=built.prompt_sets, seed=job.seed, step=run.step, total=built.total,
        bpe=built.bpe, curve=run.curve, precision=job.precision, device=job.dev, adversary=opt.adversary,
        resumed_from=run.resumed_from, data_root=job.data_root, completed=run.step >= built.total,
        elapsed=time.time() - run.started, base_digest=built.base_digest, model_name=built.base_architecture,
        pretrained=built.pretrained, determinism=job.determinism)
    if run.step < built.total:
        return manifest, False
    path = job.checkpoint_path
    with writing(job.out, job.created, path):
        write_outputs(job.out, built.parts, built.visual, manifest)
        if not job.keep_checkpoints and path.exists():
            path.unlink()
    return manifest, True
