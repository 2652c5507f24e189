"""Reading and checking weights files, before a model is built from them.

Every weights file zsrbench is handed (full CLIP weights, a ``local-dir`` model folder, a visual-encoder
checkpoint) is read here: a .safetensors file, or a torch pickle with ``weights_only=True`` unless the user
trusts it. Whatever makes the weights unusable (a damaged or truncated file, pickled objects besides tensors, a
folder without config or weights, NaN/inf tensors, a state dict that does not fit the encoder, a malformed
user-given sha256) becomes a :class:`ZsrError` that names the file and says what to do; :mod:`zsrbench.models.clip`
builds CLIP from what passes, and :func:`load_visual_checkpoint` puts a visual checkpoint into it.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import struct
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from zsrbench.errors import ZsrError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# what torch.load raises on a file that is not a readable checkpoint (corrupt, truncated, not a torch file)
TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, IndexError, OverflowError, struct.error,
    OSError,
)
# a trusted (full) unpickling also imports the classes the file names: a missing one is the file's problem
TRUSTED_LOAD_ERRORS = TORCH_LOAD_ERRORS + (AttributeError, ImportError)
TRUST_HINT = ("zsrbench reads checkpoints with weights_only=True. If you trust the file's source, pass "
              "--trust-checkpoint (unpickling runs code from the file); otherwise re-save only its state dict "
              "(torch.save(model.state_dict(), path), or as .safetensors).")
FULL_WEIGHTS_HINT = ("open_clip reads full-model weights with weights_only=True only: re-save only the state dict "
                     "(torch.save(model.state_dict(), path), or as .safetensors).")


def check_sha256_text(text: str) -> str:
    """A user-given sha256 as 64 lowercase hex digits (a ``sha256:`` prefix, any case, spaces around allowed).

    Anything else is a :class:`ZsrError` about the format, never reported as a digest mismatch.
    """
    digest = str(text).strip().lower().removeprefix("sha256:").strip()
    if not SHA256_HEX.fullmatch(digest):
        raise ZsrError(
            f"--checkpoint-sha256 must be a sha256 digest, 64 hexadecimal characters (optionally prefixed "
            f"'sha256:'); got {str(text)!r} ({len(str(text))} characters). Copy the digest exactly as `sha256sum "
            "FILE` prints it or as the checkpoint's publisher lists it, or drop --checkpoint-sha256."
        )
    return digest


def _weights_only_reason(text: str) -> str:
    """The one line of torch's weights_only paragraph that says what it refused (its advice is dropped)."""
    lines = [line.strip() for line in text.split("Check the documentation", 1)[0].splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Weights only", "(1)", "(2)"))]
    reason = lines[-1] if lines else text
    return reason.split("WeightsUnpickler error:", 1)[-1].split(" Please use", 1)[0].strip()


def short_error(exc: BaseException) -> str:
    """An exception as one short line (torch's weights_only messages run to paragraphs)."""
    text = str(exc)
    if text.startswith("Weights only load failed"):
        text = _weights_only_reason(text)
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    text = text if len(text) <= 200 else text[:200] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _holds_objects(exc: BaseException) -> bool:
    """weights_only refused a global (a class or function) in an otherwise readable pickle."""
    return isinstance(exc, pickle.UnpicklingError) and "global" in _weights_only_reason(str(exc)).lower()


def _damaged(path: Path, exc: BaseException, kind: str) -> ZsrError:
    return ZsrError(
        f"Cannot read {path} as a {kind} file ({short_error(exc)}): it is corrupt, truncated (an interrupted download "
        "or copy?) or not a weights file. Download or copy it again, or pass another checkpoint."
    )


def _safetensors_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (SafetensorError, OSError)


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a .safetensors file, reading only its header (which also checks the file's length)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except _safetensors_errors() as exc:
        raise _damaged(path, exc, "safetensors") from exc


def read_weights(path: Path, *, trust: bool = False, refused_hint: str = TRUST_HINT) -> Any:
    """The object a weights file holds: a .safetensors file's tensors, or a torch pickle read with
    ``weights_only=True`` unless ``trust``. A file that cannot be read is a :class:`ZsrError` naming it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except _safetensors_errors() as exc:
            raise _damaged(path, exc, "safetensors") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except (TRUSTED_LOAD_ERRORS if trust else TORCH_LOAD_ERRORS) as exc:
        if not trust and _holds_objects(exc):
            raise ZsrError(f"{path} holds pickled Python objects besides tensors ({short_error(exc)}), so it was not "
                           f"loaded. {refused_hint}") from exc
        raise _damaged(path, exc, "PyTorch checkpoint") from exc


def nonfinite_tensors(tensors: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an inf."""
    return [k for k, t in tensors.items() if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())
            and not bool(torch.isfinite(t).all())]


def refuse_nonfinite(tensors: dict[str, Any], where: str) -> None:
    """A :class:`ZsrError` when any tensor holds NaN/inf: an evaluation of such weights means nothing."""
    bad = nonfinite_tensors(tensors)
    if bad:
        shown = ", ".join(bad[:3]) + (", …" if len(bad) > 3 else "")
        raise ZsrError(
            f"{where}: {len(bad)} of {len(tensors)} tensors hold NaN or inf values ({shown}); evaluating them would "
            "be meaningless. The training that wrote them diverged or the file is damaged: re-train (e.g. with a "
            "lower learning rate) or download/copy the checkpoint again."
        )


def check_model_weights(path: Path) -> None:
    """Fail early, naming the file, on full-CLIP weights open_clip could not read (it reads them again)."""
    if path.suffix in (".npz", ".npy"):  # big_vision (SigLIP) weights: open_clip converts them itself
        return
    if path.suffix == ".safetensors":
        keys: list[str] | None = safetensors_keys(path)
    else:
        obj = read_weights(path, refused_hint=FULL_WEIGHTS_HINT)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        tensors = isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())
        keys = list(obj) if tensors else None
    if not keys:
        raise ZsrError(f"{path} holds no state dict of tensors, so it is not a file of CLIP weights. Pass weights "
                       "saved with torch.save(model.state_dict(), path) or as .safetensors.")


# --- model folders -----------------------------------------------------------------------------------------


class _QuietRootLogger:
    """open_clip warns through the root logger; silence it while building."""

    def __enter__(self) -> None:
        root = logging.getLogger()
        self.was, root.disabled = root.disabled, True

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger().disabled = self.was


def check_model_folder(folder: Path) -> None:
    """A ``local-dir`` folder must hold a readable ``open_clip_config.json`` with a ``model_cfg``."""
    if not folder.is_dir():
        raise ZsrError(f"Model folder {folder} does not exist; pass local-dir:<folder written by zsrbench train>.")
    cfg_path = folder / "open_clip_config.json"
    if not cfg_path.is_file():
        raise ZsrError(
            f"{folder} has no open_clip_config.json, so it is not a model folder written by `zsrbench train` (nor "
            "an open_clip local-dir). Pass the folder `zsrbench train --out` wrote (open_clip_config.json, "
            "open_clip_model.safetensors, manifest.json), or a visual-encoder checkpoint file."
        )
    from zsrbench.jsonio import UnreadableJSON, read

    try:
        cfg = read(cfg_path, "open_clip config")
    except UnreadableJSON as exc:
        raise ZsrError(f"{cfg_path} is not readable JSON ({exc.reason}); restore it, or re-run `zsrbench train` to "
                       "write the folder again.") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg"), dict):
        raise ZsrError(f"{cfg_path} has no 'model_cfg' (the open_clip architecture); restore it, or re-run "
                       "`zsrbench train` to write the folder again.")


def folder_weights(folder: Path) -> Path:
    """The weights file open_clip loads from a ``local-dir`` folder (a folder without one is refused: open_clip
    would silently build a randomly initialised model)."""
    from open_clip.factory import _find_checkpoint_in_dir

    with _QuietRootLogger():
        found = _find_checkpoint_in_dir(folder)
    if found is None:
        raise ZsrError(f"Model folder {folder} holds open_clip_config.json but no weights file (.safetensors, .bin "
                       "or .pth). Copy the weights next to the config, or re-run `zsrbench train`.")
    return Path(found)


# --- fitting a state dict ----------------------------------------------------------------------------------


def show_keys(keys: Sequence[str], few: int = 5) -> str:
    """A few key names, then "… and N more"."""
    keys = list(keys)
    return ", ".join(keys[:few]) + (f", … and {len(keys) - few} more" if len(keys) > few else "")


FITS_HINT = "Check --model matches the architecture the checkpoint was trained with."


def check_state_fits(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path | str, *,
                     what: str = "the visual encoder of this architecture", hint: str = FITS_HINT) -> None:
    """Keys and shapes of ``state`` must be those of ``own`` exactly (a strict load); ``what`` names the module
    it must fit and ``hint`` says what to do, in the one-paragraph :class:`ZsrError` naming the keys."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k} (checkpoint {list(state[k].shape)}, model {list(own[k].shape)})"
                  for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    parts = [f"{label}: {show_keys(keys)}" for label, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched)) if keys]
    if parts:
        raise ZsrError(f"Checkpoint {path} does not fit {what} ({'; '.join(parts)}). {hint}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_state(tensors: dict[str, torch.Tensor]) -> str:
    """Digest of a state dict's names, shapes, dtypes and bytes (independent of device)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


VISUAL_KEYS = ("vision_encoder_state_dict", "visual_state_dict", "state_dict", "model_state_dict", "model")


def extract_visual_state(obj: Any, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The visual state dict from the formats published defenses use.

    Accepts a raw visual state dict; a dict holding it under ``vision_encoder_state_dict`` (or ``state_dict``,
    ``model``); ``module.`` (DataParallel) prefixes; a full CLIP state dict (``visual.`` prefix kept only).
    """
    if isinstance(obj, dict):
        for key in VISUAL_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ZsrError(
            f"The checkpoint{f' {path}' if path else ''} holds no state dict of tensors; expected a visual-encoder "
            f"state dict (alone, or under one of {', '.join(VISUAL_KEYS)}). Pass such a file, or a folder written "
            "by `zsrbench train`."
        )
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    return state


def _verify_digest(path: Path, expected_sha256: str | None) -> str:
    want = check_sha256_text(expected_sha256) if expected_sha256 else None
    digest = sha256_file(path)
    if want and digest != want:
        raise ZsrError(
            f"Checkpoint {path} has sha256 {digest}, but {want} was expected: the file is not the one "
            "you named (corrupt or a different version). Download it again or drop --checkpoint-sha256."
        )
    return digest


def load_visual_checkpoint(
    model: nn.Module, path: str | Path, *, expected_sha256: str | None = None, trust: bool = False
) -> dict[str, Any]:
    """Load a visual-encoder checkpoint into ``model.visual`` strictly; return its provenance."""
    path = Path(path)
    if not path.is_file():
        raise ZsrError(f"Checkpoint file {path} does not exist. Pass the path of a .pt/.pth visual-encoder checkpoint.")
    digest = _verify_digest(path, expected_sha256)
    state = extract_visual_state(read_weights(path, trust=trust), path)
    refuse_nonfinite(state, f"Checkpoint {path}")
    check_state_fits(model.visual.state_dict(), state, path)
    model.visual.load_state_dict(state, strict=True)
    return {"checkpoint": str(path), "checkpoint_sha256": digest, "checkpoint_trusted": bool(trust)}
