"""One strict loader for every checkpoint format robust-CLIP papers ship.

``open_clip``: a hub / local-dir folder (``open_clip_config.json`` + weights), the whole model with its own
preprocessing and tokenizer. ``visual``: a visual-encoder state dict (``module.`` / ``visual.`` prefixes, a
``state_dict`` / ``model`` wrapper allowed) put into a base CLIP. ``vision_encoder_state_dict``: the same under
that key, with OpenAI CLIP's ``VisionTransformer`` names (open_clip's ``visual.`` names, unprefixed). ``transformers``:
a ``CLIPModel`` (or ``CLIPVisionModelWithProjection``) folder, converted by :mod:`zsrbench.models.hf_convert`.
Every load is strict: a missing or unexpected key, a shape mismatch, or an activation (QuickGELU vs GELU) other
than the checkpoint's is a one-paragraph :class:`ZsrError` saying what to do."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zsrbench.errors import ZsrError
from zsrbench.jsonio import read as read_json
from zsrbench.models import hf_convert
from zsrbench.models.clip import CLIPParts, _open_clip, activation_is_quickgelu, build_clip
from zsrbench.models.weights import (
    FULL_WEIGHTS_HINT, _QuietRootLogger, check_model_folder, check_model_weights, check_state_fits,
    extract_visual_state, folder_weights, read_weights, refuse_nonfinite, safetensors_keys, sha256_file, sha256_state,
    short_error,
)

FORMATS = ("open_clip", "visual", "vision_encoder_state_dict", "transformers")
OC_CONFIG, HF_CONFIG, HF_PREPROCESS = "open_clip_config.json", "config.json", "preprocessor_config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
ACTIVATIONS = {"quick_gelu": "quick_gelu", "quickgelu": "quick_gelu", "gelu": "gelu"}
VEC = "vision_encoder_state_dict"


def _hf_config(folder: Path) -> dict[str, Any] | None:
    """A folder's transformers CLIP config.json, or None when it has none (or one of another model)."""
    cfg = read_json(folder / HF_CONFIG, "transformers config") if (folder / HF_CONFIG).is_file() else None
    ok = isinstance(cfg, dict) and (cfg.get("model_type") in ("clip", "clip_vision_model") or "vision_config" in cfg)
    return cfg if ok else None


def _folder_format(folder: Path) -> str | None:
    return "open_clip" if (folder / OC_CONFIG).is_file() else "transformers" if _hf_config(folder) else None


def _hf_weights(folder: Path) -> Path:
    found = [folder / name for name in HF_WEIGHTS if (folder / name).is_file()]
    if not found:
        sharded = any(folder.glob("*.index.json"))
        raise ZsrError(f"{folder} holds a transformers CLIP config.json but " + (
            "weights sharded into several files, which zsrbench does not load" if sharded else "neither "
            "model.safetensors nor pytorch_model.bin") + ". Save the model again in one file "
            "(CLIPModel.save_pretrained(folder, max_shard_size='100GB')) next to config.json.")
    return found[0]


def _is_folder_weights(path: Path) -> bool:
    with contextlib.suppress(ZsrError):
        return folder_weights(path.parent).resolve() == path.resolve()
    return False


def _detect(path: Path, trust: bool) -> tuple[str, Any]:
    """(the format, the object a torch file holds, when it had to be read to tell; else None)."""
    if not path.exists():
        raise ZsrError(f"Checkpoint {path} does not exist. Pass a checkpoint file or a model folder (an open_clip "
                       "folder with open_clip_config.json, or a transformers CLIP folder with config.json).")
    if path.is_dir():
        fmt = _folder_format(path)
        if fmt is None:
            raise ZsrError(f"{path} holds neither {OC_CONFIG} (an open_clip model folder) nor a transformers CLIP "
                           f"{HF_CONFIG}, so its format is unknown. Pass the folder the model was published as, or "
                           "its visual-encoder checkpoint file.")
        return fmt, None
    named = path.name in HF_WEIGHTS or path.parent.joinpath(OC_CONFIG).is_file()  # a published folder's weights?
    parent = _folder_format(path.parent) if named else None
    if parent == "transformers" or parent == "open_clip" and _is_folder_weights(path):
        return parent, None
    obj = None if path.suffix == ".safetensors" else read_weights(path, trust=trust)
    if isinstance(obj, dict) and isinstance(obj.get(VEC), dict):
        return VEC, obj
    inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), obj) \
        if isinstance(obj, dict) else {}
    keys = safetensors_keys(path) if obj is None else [str(k).removeprefix("module.") for k in inner]
    if any(k.startswith(("vision_model.", "text_model.")) for k in keys):
        raise ZsrError(f"{path} holds a transformers CLIP state dict (vision_model.* keys) without its {HF_CONFIG} "
                       "beside it, so its architecture is unknown. Put it, named model.safetensors or "
                       f"pytorch_model.bin, in a folder with the {HF_CONFIG} it was saved with, and pass the folder.")
    return "visual", obj


def detect_format(path: Path, *, trust: bool = False) -> str:
    """``"open_clip"``, ``"visual"``, ``"vision_encoder_state_dict"`` or ``"transformers"`` for a checkpoint file or
    folder, from its configs and key names only (a torch file is read with ``weights_only`` unless ``trust``)."""
    return _detect(Path(path), trust)[0]


def _activation(text: str | None) -> str | None:
    act = None if text is None else ACTIVATIONS.get(str(text).strip().lower().replace("-", "_"))
    if text is not None and act is None:
        raise ZsrError(f"The declared activation '{text}' is not one zsrbench knows; use 'quick_gelu' (OpenAI CLIP and "
                       "its fine-tunes) or 'gelu'.")
    return act


def check_activation(parts: CLIPParts, want: str | None, because: str) -> None:
    """The built model's activation must be ``want`` (``"quick_gelu"``/``"gelu"``, None: unknown, not checked)."""
    has = "quick_gelu" if activation_is_quickgelu(parts.model) else "gelu"
    if want is None or has == want:
        return
    label, name, flag = {"quick_gelu": "QuickGELU", "gelu": "GELU"}, parts.name, str(want == "quick_gelu").lower()
    alt = f"{name}-quickgelu" if want == "quick_gelu" else name.removesuffix("-quickgelu")
    fix = (f"set \"quick_gelu\": {flag} in the model_cfg of {name[10:]}/{OC_CONFIG}" if name.startswith("local-dir:")
           else f"use {alt}" if alt != name and alt in _open_clip().list_models()
           else f"use an architecture built with {label[want]} (an open_clip config with quick_gelu {flag})")
    raise ZsrError(f"The checkpoint needs {label[want]} ({because}) but {name} is built with {label[has]}, which "
                   f"would silently compute other features from the same weights: {fix}.")


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str, hint: str,
                 notes: list[str]) -> None:
    refuse_nonfinite(state, f"Checkpoint {path}")
    own = module.state_dict()
    check_state_fits(own, state, path, what=what, hint=hint)
    dtypes = ", ".join(sorted({str(t.dtype)[6:] for k, t in state.items() if t.dtype != own[k].dtype}))
    notes.extend([f"checkpoint tensors in {dtypes} converted to the model's dtype"] if dtypes else [])
    module.load_state_dict(state, strict=True)


def _log_scale(obj: Any) -> float | None:
    """exp of the ``logit_scale`` a checkpoint holds (top level or in its state dict wrapper), else None."""
    for d in (obj, *(obj.get(k) for k in ("state_dict", "model") if isinstance(obj, dict))):
        if isinstance(d, dict):
            t = d.get("logit_scale", d.get("module.logit_scale"))
            if isinstance(t, torch.Tensor) and t.numel() == 1:
                return float(t.detach().float().exp())
    return None


def _meta_model(arch: str) -> nn.Module:
    """The open_clip model ``arch`` names, on the meta device (no memory, no weights read)."""
    try:
        with _QuietRootLogger(), torch.device("meta"):
            return _open_clip().create_model(arch, load_weights=False, device="meta")
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ZsrError(f"Could not build {arch} ({short_error(exc)}); check its {OC_CONFIG}.") from exc


def _open_clip_state_shapes(wpath: Path) -> dict[str, torch.Tensor]:
    """The names and shapes open_clip will load from a folder's weights file, as meta tensors."""
    if wpath.suffix == ".safetensors":
        from safetensors import safe_open

        check_model_weights(wpath)  # reads the header only
        with safe_open(str(wpath), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    else:
        obj = read_weights(wpath, refused_hint=FULL_WEIGHTS_HINT)
        obj = obj["state_dict"] if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
        if not (isinstance(obj, dict) and obj and all(isinstance(t, torch.Tensor) for t in obj.values())):
            check_model_weights(wpath)  # its error names the problem
        shapes = {str(k): list(t.shape) for k, t in obj.items()}
    if next(iter(shapes), "").startswith("module"):  # as open_clip reads it
        shapes = {k[7:]: s for k, s in shapes.items()}
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _load_open_clip(path: Path) -> tuple[CLIPParts, Path, float | None]:
    folder = path if path.is_dir() else path.parent
    check_model_folder(folder)
    wpath = folder_weights(folder)
    if path.is_file() and path.resolve() != wpath.resolve():
        raise ZsrError(f"{path} is not the weights file open_clip loads from {folder} ({wpath.name}); pass the "
                       "folder, or move the other weights files out of it.")
    arch = f"local-dir:{folder}"
    own = _meta_model(arch).state_dict()
    state = _open_clip_state_shapes(wpath)
    if "text.transformer.embeddings.position_ids" not in own:  # open_clip drops it too
        state.pop("text.transformer.embeddings.position_ids", None)
    for k in ("logit_scale", "logit_bias"):  # open_clip reshapes a scalar vs a 1-element tensor
        if k in own and k in state and own[k].numel() == state[k].numel():
            state[k] = state[k].reshape(own[k].shape)
    check_state_fits(own, state, wpath, what=f"the model its {OC_CONFIG} describes",
                     hint="The folder's weights and config do not belong together: download or copy the folder again.")
    parts = build_clip(arch)
    return parts, wpath, float(parts.model.logit_scale.detach().exp()) if "logit_scale" in state else None


def _load_visual(path: Path, obj: Any, fmt: str, architecture: str | None, pretrained: str | None,
                 declared: str | None, trust: bool) -> tuple[CLIPParts, Path, float | None]:
    if architecture is None:
        raise ZsrError(f"{path} is a visual-encoder checkpoint ({fmt}): name the architecture of the CLIP it was "
                       "fine-tuned from (and its pretrained weights, for the text tower), e.g. ViT-B-32 + openai.")
    if path.is_dir():
        raise ZsrError(f"{path} is a folder; a {fmt} checkpoint is one file (.pt, .pth, .bin or .safetensors).")
    obj = read_weights(path, trust=trust) if obj is None else obj
    if fmt == VEC and not (isinstance(obj, dict) and isinstance(obj.get(VEC), dict)):
        raise ZsrError(f"{path} has no '{VEC}' entry, so it is not in the {VEC} format; pass fmt='visual' for a "
                       "plain visual-encoder state dict, or leave the format out to detect it.")
    # OpenAI's VisionTransformer names are open_clip's visual names (checked by the tests)
    state = extract_visual_state({VEC: obj[VEC]} if fmt == VEC else obj, path)
    parts = build_clip(architecture, pretrained)
    check_activation(parts, declared, "declared for this checkpoint")
    _load_strict(parts.visual, state, path, f"the visual encoder of {parts.name}",
                 "Check the architecture names the CLIP the checkpoint was fine-tuned from (ViT-B-32 vs ViT-B-16 vs "
                 "ViT-L-14, and the image size).", parts.source["notes"])
    return parts, path, _log_scale(obj)


def _load_transformers(path: Path, architecture: str | None, pretrained: str | None, declared: str | None,
                       trust: bool) -> tuple[CLIPParts, Path, float | None]:
    folder = path if path.is_dir() else path.parent
    cfg = _hf_config(folder)
    if cfg is None:
        raise ZsrError(f"{folder} has no transformers CLIP {HF_CONFIG} (model_type 'clip' or 'clip_vision_model'); "
                       "pass the folder CLIPModel.save_pretrained wrote.")
    wpath = path if path.is_file() else _hf_weights(folder)
    act = hf_convert.config_activation(cfg)
    if declared is not None and declared != act:
        raise ZsrError(f"The checkpoint is declared to use {declared} but its {HF_CONFIG} says hidden_act '{act}'; "
                       "the config is what the weights were trained with: correct the declared activation.")
    vision_only = hf_convert.tower_configs(cfg)[1] is None
    arch = architecture or hf_convert.arch_from_config(cfg)
    obj = read_weights(wpath, trust=trust)
    if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise ZsrError(f"{wpath} holds no flat state dict of tensors, so it is not a transformers checkpoint; pass the "
                       "file CLIPModel.save_pretrained wrote.")
    state = hf_convert.hf_to_openclip_state(obj, where=f"Checkpoint {wpath}")
    parts = build_clip(arch, pretrained if vision_only else None)
    notes = parts.source["notes"]
    if not vision_only:
        notes[:] = [n for n in notes if not n.startswith("random initialisation")]
    notes.append(f"converted from a transformers CLIP{'VisionModelWithProjection' if vision_only else 'Model'} "
                 f"({HF_CONFIG} numbers: {arch})")
    check_activation(parts, act, f"its {HF_CONFIG} says hidden_act '{act}'")
    hint = (f"Its {HF_CONFIG} and weights do not belong together, or {arch} is not its architecture: leave the "
            "architecture out to infer it from the config.")
    if vision_only:
        state = {k.removeprefix("visual."): v for k, v in state.items()}
        _load_strict(parts.visual, state, wpath, f"the visual encoder of {arch}", hint, notes)
    else:
        _load_strict(parts.model, state, wpath, f"the open_clip model {arch}", hint, notes)
    _hf_preprocess(folder, parts)
    return parts, wpath, _log_scale(obj)


def _hf_preprocess(folder: Path, parts: CLIPParts) -> None:
    """mean/std from the folder's preprocessor_config.json when it has one (else open_clip's, noted)."""
    if not (folder / HF_PREPROCESS).is_file():
        parts.source["notes"].append(f"no {HF_PREPROCESS}: open_clip's default mean/std for {parts.name}")
        return
    pp = read_json(folder / HF_PREPROCESS, "transformers preprocessor config")
    mean, std = (pp.get(k) if isinstance(pp, dict) else None for k in ("image_mean", "image_std"))
    if not all(isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)
               for v in (mean, std)):
        raise ZsrError(f"{folder / HF_PREPROCESS} has no image_mean/image_std of three numbers each; restore it or "
                       "delete it (open_clip's defaults are then used).")
    parts.mean, parts.std = tuple(float(x) for x in mean), tuple(float(x) for x in std)
    parts.source["preprocess"] = HF_PREPROCESS


def load_any(path: Path, *, fmt: str | None = None, architecture: str | None = None, pretrained: str | None = None,
             activation: str | None = None, logit_scale: float | None = None, trust: bool = False,
             device: str = "cpu") -> CLIPParts:
    """Load a checkpoint of any :data:`FORMATS` strictly (``fmt`` None: :func:`detect_format`).

    ``visual`` / ``vision_encoder_state_dict`` (and a transformers vision-only model) go into the base CLIP
    ``architecture`` + ``pretrained`` builds; ``open_clip`` and ``transformers`` build their own architecture.
    ``activation`` (``"quick_gelu"``/``"gelu"``) is what the caller knows the checkpoint needs; ``logit_scale`` (the
    multiplier, e.g. 100) is used when the checkpoint holds none. ``parts.source`` records the format, the
    checkpoint's sha256, and the logit scale with its origin (``checkpoint``, ``catalogue`` or ``base_model``).
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ZsrError(f"Unknown checkpoint format '{fmt}'; use one of {', '.join(FORMATS)} (or none, to detect it).")
    if logit_scale is not None and not (math.isfinite(float(logit_scale)) and float(logit_scale) > 0):
        raise ZsrError(f"logit_scale must be a positive number (the multiplier, e.g. 100); got {logit_scale!r}.")
    declared = _activation(activation)
    fmt, obj = _detect(path, trust) if fmt is None or not path.exists() else (fmt, None)  # (a missing path: its error)
    if fmt == "open_clip":
        parts, wpath, scale = _load_open_clip(path)
        check_activation(parts, declared, "declared for this checkpoint")
    elif fmt == "transformers":
        parts, wpath, scale = _load_transformers(path, architecture, pretrained, declared, trust)
    else:
        parts, wpath, scale = _load_visual(path, obj, fmt, architecture, pretrained, declared, trust)
    origin = "checkpoint" if scale is not None else "catalogue" if logit_scale is not None else "base_model"
    if scale is None:
        scale = float(logit_scale) if logit_scale is not None else float(parts.model.logit_scale.detach().exp())
    elif logit_scale is not None and not math.isclose(scale, float(logit_scale), rel_tol=1e-3):
        parts.source["notes"].append(f"logit scale {scale:g} from the checkpoint, not the {float(logit_scale):g} given")
    parts.source.update(format=fmt, checkpoint=str(path), checkpoint_sha256=sha256_file(wpath),
                        checkpoint_trusted=bool(trust), logit_scale=scale, logit_scale_origin=origin)
    parts.source["tensors_sha256"] = sha256_state(parts.model.state_dict())
    parts.model.eval().to(device)
    return parts
