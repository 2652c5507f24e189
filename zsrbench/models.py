"""Building CLIP through open_clip, loading defense checkpoints, and the zero-shot classifier.

Model names: an open_clip architecture (``ViT-B-32-quickgelu``) with a pretrained tag (``openai``), an
``hf-hub:org/repo`` id, a ``local-dir:/path`` folder (``open_clip_config.json`` + weights, as ``zsrbench
train`` writes), or one of zsrbench's own configs (``zsr-tiny``). A visual-encoder checkpoint file (the
format the published defenses use) can then replace the visual weights, strictly. Weights files are read and
checked in :mod:`zsrbench.weights_io`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.errors import ZsrError
from zsrbench.weights_io import (
    TORCH_LOAD_ERRORS, _QuietRootLogger, check_model_folder, check_model_weights, check_sha256_text, check_state_fits,
    folder_weights, read_weights, refuse_nonfinite, short_error,
)
# the rest of zsrbench.weights_io, importable from here as before it moved there
from zsrbench.weights_io import (  # noqa: F401
    FULL_WEIGHTS_HINT, SHA256_HEX, TRUST_HINT, TRUSTED_LOAD_ERRORS, nonfinite_tensors, safetensors_keys,
)

log = logging.getLogger("zsrbench")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LOGIT_SCALE = 100.0
CONFIG_DIR = Path(__file__).parent / "model_configs"
SHIPPED_TAG = "zsrbench"  # pretrained tag of the weights that ship inside the package


def cache_dir() -> Path:
    """zsrbench's cache (text heads, downloads, fine-tuned defenses): ``$ZSRBENCH_CACHE``, else
    ``$XDG_CACHE_HOME/zsrbench``, else ``~/.cache/zsrbench`` (:func:`zsrbench.paths.cache_dir`)."""
    from zsrbench import paths

    return paths.cache_dir()


def _open_clip():
    import open_clip

    if not getattr(open_clip, "_zsrbench_configs", False):
        open_clip.add_model_config(CONFIG_DIR)
        open_clip._zsrbench_configs = True
    return open_clip


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


def portable_path(path: str | Path) -> str:
    """A machine-independent name for a file or folder, as result records store it.

    Inside zsrbench's cache (:func:`cache_dir`): ``cache:<path relative to the cache>`` (a folder fine-tuned on
    demand, a downloaded checkpoint); any other absolute path (or ``~/…``): its file or folder name only (the
    sha256 next to it identifies the file); a relative path as given. ``Defense.load`` accepts ``cache:…``.
    """
    text = str(path)
    if text.startswith("cache:"):
        return text
    p = Path(text).expanduser()
    try:
        return f"cache:{p.resolve().relative_to(cache_dir().resolve()).as_posix()}"
    except (ValueError, OSError):
        pass
    return p.name if (p.is_absolute() or text.startswith("~")) else text


def resolve_portable(text: str) -> str:
    """The local path a :func:`portable_path` ``cache:<path>`` name stands for (anything else unchanged)."""
    return str(cache_dir() / text.split(":", 1)[1]) if text.startswith("cache:") else text


@dataclass
class CLIPParts:
    """A loaded CLIP: the open_clip model, its tokenizer, and where it came from."""

    model: nn.Module  # open_clip CLIP (``.visual`` is the encoder the defenses fine-tune)
    tokenizer: Any
    name: str
    pretrained: str | None
    image_size: int
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    source: dict[str, Any] = field(default_factory=dict)  # checkpoint path, sha256, notes

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    def describe(self) -> dict[str, Any]:
        return {"architecture": self.name, "pretrained": self.pretrained, "image_size": self.image_size, **self.source}

    def tensors_sha256(self) -> str:
        """The model's identity: :func:`sha256_state` of the whole state dict (visual and text tower).

        :func:`build_clip` computes it once, after any checkpoint is loaded; parts built another way (a plugin's
        loader) get it computed here on first use. Equal tensors give equal digests whatever file they came from.
        """
        if not self.source.get("tensors_sha256"):
            self.source["tensors_sha256"] = sha256_state(self.model.state_dict())
        return str(self.source["tensors_sha256"])

    def _base_folder(self) -> tuple[str | None, str | None]:
        """(the known base architecture, else None; the folder standing for it, else None)."""
        if not self.name.startswith("local-dir:"):
            return self.name, None
        base = self.source.get("base_architecture")
        if base and not str(base).startswith("local-dir:"):
            return str(base), None
        return None, str(base or self.name).split(":", 1)[1]  # trained from (or being) a plain folder

    def base_name(self) -> str:
        """The architecture to name the model by: for a ``local-dir:`` folder, the architecture it was trained
        (or published) from when known, else the folder's name; otherwise the open_clip name."""
        base, folder = self._base_folder()
        return base if base is not None else Path(str(folder)).name

    def portable_architecture(self) -> str:
        """:meth:`base_name`, or ``local-dir:<portable name>`` for a folder of unknown origin (no local paths)."""
        base, folder = self._base_folder()
        return base if base is not None else "local-dir:" + portable_path(str(folder))

    def portable_pretrained(self) -> str | None:
        """The pretrained tag, or a weights file given as the tag by :func:`portable_path`."""
        return None if self.pretrained is None else portable_path(self.pretrained)

    def portable_checkpoint(self, given: str | Path | None = None) -> str | None:
        """Where the evaluated weights came from, without machine-local paths: a catalogue checkpoint by its
        catalogue name, ``hf-hub:`` ids as they are, files and folders by :func:`portable_path`."""
        if self.source.get("catalogue"):
            return str(self.source["catalogue"])
        ck = self.source.get("checkpoint") or given
        if ck is None:
            return None
        text = str(ck)
        if text.startswith("local-dir:"):
            text = text.split(":", 1)[1]
        return text if text.startswith(("hf-hub:", "cache:")) else portable_path(text)


def activation_is_quickgelu(model: nn.Module) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.visual.modules())


def resolve_arch(name: str, pretrained: str | None) -> tuple[str, list[str]]:
    """OpenAI weights need QuickGELU: ``ViT-B-32`` + ``openai`` becomes ``ViT-B-32-quickgelu`` (noted)."""
    notes: list[str] = []
    oc = _open_clip()
    if pretrained == "openai" and not name.endswith("-quickgelu") and ":" not in name:
        qg = f"{name}-quickgelu"
        if qg in oc.list_models():
            notes.append(f"architecture {name} + openai weights: using {qg} (OpenAI CLIP uses QuickGELU)")
            name = qg
    return name, notes


# --- building CLIP -----------------------------------------------------------------------------------------


def _schema(arch: str) -> str | None:
    return arch.split(":", 1)[0] if arch.startswith(("hf-hub:", "local-dir:")) else None


def _check_arch(oc: Any, arch: str, schema: str | None) -> None:
    if schema is None and arch not in oc.list_models():
        import difflib

        close = difflib.get_close_matches(arch, oc.list_models(), n=3)
        raise ZsrError(
            f"Unknown model architecture '{arch}'. "
            + (f"Did you mean {', '.join(close)}? " if close else "")
            + "Use an open_clip name (e.g. ViT-B-32-quickgelu with --pretrained openai), hf-hub:org/repo, "
            "local-dir:/path, or zsr-tiny."
        )
    if schema == "local-dir":
        check_model_folder(Path(arch.split(":", 1)[1]))


def _weights_source(oc: Any, arch: str, schema: str | None, pretrained: str | None) -> tuple[str | None, Path | None]:
    """(what to pass open_clip as ``pretrained``, the local weights file it will read, if any)."""
    if schema == "local-dir":
        return None, folder_weights(Path(arch.split(":", 1)[1]))
    if schema is not None or not pretrained:
        return None, None
    if pretrained == SHIPPED_TAG:  # weights that ship inside zsrbench (the micro CLIP)
        from zsrbench.micro.pretrained import resolve_pretrained

        shipped = resolve_pretrained(arch, pretrained)
        return shipped, Path(shipped) if shipped else None
    if oc.get_pretrained_cfg(arch, pretrained):
        return pretrained, None
    if Path(pretrained).is_file():
        return pretrained, Path(pretrained)
    tags = oc.list_pretrained_tags_by_model(arch) + ([SHIPPED_TAG] if arch.startswith("zsr-") else [])
    raise ZsrError(
        f"--pretrained '{pretrained}' is neither a pretrained tag of {arch} nor an existing weights file. Pass "
        + (f"one of its tags ({', '.join(tags)})" if tags else "no tag (it has none)")
        + " or the path of a file of full CLIP weights."
    )


def _create_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError, SafetensorError)


def _create_model(oc: Any, arch: str, weights: str | None, label: str | None) -> nn.Module:
    """open_clip's model; a failure to fetch or fit its weights is a :class:`ZsrError` saying what to check."""
    try:
        with _QuietRootLogger():
            return oc.create_model(arch, pretrained=weights, device="cpu")
    except _create_errors() as exc:
        raise ZsrError(
            f"Could not build {arch}" + (f" with the weights {label}" if label else "") + f" ({short_error(exc)}). "
            "Check that --model names the architecture the weights were saved from and that the file is complete; "
            "a pretrained tag or hf-hub: id needs network access the first time (or a filled cache)."
        ) from exc


def _weights_provenance(schema: str | None, pretrained: str | None, weights_path: Path | None) -> dict[str, Any]:
    if weights_path is None or not (pretrained == SHIPPED_TAG or schema == "local-dir"):
        return {}
    name = (f"zsrbench:{weights_path.parent.name}/{weights_path.name}" if schema is None
            else portable_path(weights_path))
    return {"weights_sha256": sha256_file(weights_path), "weights_file": name}


def build_clip(
    name: str,
    pretrained: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_sha256: str | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device = "cpu",
) -> CLIPParts:
    """Build CLIP with open_clip, then (optionally) load a visual-encoder checkpoint strictly.

    Unreadable or non-finite weights, a folder without config or weights, an unknown tag: :class:`ZsrError`.
    """
    oc = _open_clip()
    arch, notes = resolve_arch(name, pretrained)
    schema = _schema(arch)
    _check_arch(oc, arch, schema)
    weights, weights_path = _weights_source(oc, arch, schema, pretrained)
    if weights_path is not None:
        check_model_weights(weights_path)
    label = str(weights_path) if weights_path is not None else (f"'{weights}'" if weights else None)
    model = _create_model(oc, arch, weights, label)
    if label or schema:  # loaded weights (a random initialisation is finite)
        refuse_nonfinite(model.state_dict(), f"The weights of {arch}" + (f" from {label}" if label else ""))
    tokenizer = oc.get_tokenizer(arch)
    source: dict[str, Any] = {"notes": notes, **_weights_provenance(schema, pretrained, weights_path)}
    if schema is None and not pretrained and checkpoint is None:
        notes.append("random initialisation (no pretrained weights)")
    if pretrained == "openai" or arch.endswith("-quickgelu"):
        if not activation_is_quickgelu(model):
            raise ZsrError(f"{arch} was built without QuickGELU; OpenAI weights would silently change the model.")
    if checkpoint is not None:
        source.update(load_visual_checkpoint(model, checkpoint, expected_sha256=checkpoint_sha256, trust=trust_checkpoint))
    # the model's identity: its tensors (a file's bytes differ for equal tensors, e.g. safetensors header order)
    source["tensors_sha256"] = sha256_state(model.state_dict())
    model.eval().to(device)
    size = model.visual.image_size
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    return CLIPParts(
        model=model, tokenizer=tokenizer, name=arch, pretrained=pretrained, image_size=image_size,
        mean=tuple(pp.get("mean", CLIP_MEAN)), std=tuple(pp.get("std", CLIP_STD)), source=source,
    )


# --- visual-encoder checkpoints ----------------------------------------------------------------------------

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


# --- the zero-shot classifier ------------------------------------------------------------------------------


def text_tower_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("visual.") and k != "logit_scale"}


@torch.no_grad()
def compute_text_head(model: nn.Module, tokenizer: Any, prompts: list[list[str]], device: torch.device | str,
                      batch: int = 256) -> torch.Tensor:
    """C×D L2-normalised class embeddings: the mean of each class's normalised prompt embeddings, renormalised."""
    flat = [p for ps in prompts for p in ps]
    embs = []
    for i in range(0, len(flat), batch):
        tokens = tokenizer(flat[i : i + batch]).to(device)
        embs.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    e = torch.cat(embs)
    out, j = [], 0
    for ps in prompts:
        out.append(F.normalize(e[j : j + len(ps)].mean(0), dim=-1))
        j += len(ps)
    return torch.stack(out)


HEAD_CHECK_ROWS = 2  # rows of a cached text head recomputed and compared each time it is used
HEAD_CHECK_TOL = 1e-4  # |cached − recomputed| allowed per element (the same tower, another batch composition)


def head_sha256(head: torch.Tensor) -> str:
    """sha256 of a text head's float32 bytes (its shape in front): what records and the cache name it by."""
    t = head.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(f"{tuple(t.shape)}|".encode() + t.numpy().tobytes()).hexdigest()


def _cached_head(path: Path, n_classes: int, tower: str, prompts_digest: str) -> tuple[torch.Tensor | None, str]:
    """(the cached text head, "") or (None, why not): absent, unreadable, written for other inputs, or its bytes
    no longer match the digest stored with it. A damaged or changed cache file is recomputed, never fatal."""
    if not path.is_file():
        return None, ""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS:
        return None, "unreadable"
    head = blob.get("head") if isinstance(blob, dict) else None
    if not (isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[0] == n_classes):
        return None, "not a text head of this many classes (or written by an older zsrbench)"
    if blob.get("tower") != tower or blob.get("prompts") != prompts_digest:
        return None, "written for another text tower or other prompts"
    if blob.get("sha256") != head_sha256(head) or not bool(torch.isfinite(head).all()):
        return None, "its tensor does not match the digest stored with it (changed after it was written)"
    return head, ""


def _rows_agree(parts: CLIPParts, prompts: list[list[str]], head: torch.Tensor, key: str) -> bool:
    """Recompute a few seeded rows of a cached head and compare (catches a head replaced consistently with its
    digest, e.g. rows permuted)."""
    rng = np.random.default_rng(int(key[:8], 16))
    rows = sorted(rng.choice(len(prompts), size=min(HEAD_CHECK_ROWS, len(prompts)), replace=False).tolist())
    device = next(parts.model.parameters()).device
    fresh = compute_text_head(parts.model, parts.tokenizer, [prompts[i] for i in rows], device).cpu()
    return bool((fresh - head[rows].float()).abs().max() <= HEAD_CHECK_TOL)


def text_head(parts: CLIPParts, prompts: list[list[str]], *, device: torch.device | str = "cpu",
              cache: Path | None | bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
    """The class text head, cached on disk by (text-tower weights digest, prompts digest).

    A cache file holds the head with its digest and the digests it was computed from; a head read from it is
    used only when those match and a few of its rows, recomputed, agree with it (else it is recomputed, with a
    warning). ``info`` says where the head came from (``text_head_source``: computed, or the verified cache)
    and its digest (``text_head_sha256``), which result records keep.
    """
    tower = sha256_state(text_tower_state(parts.model))
    prompts_digest = hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest()
    key = hashlib.sha256(f"{tower}|{prompts_digest}".encode()).hexdigest()[:32]
    info: dict[str, Any] = {"text_tower_sha256": tower, "prompts_sha256": prompts_digest, "cache_hit": False}
    path = None
    if cache:
        folder = (cache if isinstance(cache, Path) else cache_dir()) / "text_heads"
        path = folder / f"{key}.pt"
        head, why = _cached_head(path, len(prompts), tower, prompts_digest)
        if head is not None and not _rows_agree(parts, prompts, head, key):
            head, why = None, "recomputed rows of it differ from the stored ones"
        if head is not None:
            info.update(cache_hit=True, text_head_source="cache (digest and recomputed rows checked)",
                        text_head_sha256=head_sha256(head))
            return head.to(device), info
        if why:
            log.warning("the cached text head %s is not used (%s); it is computed again and the cache rewritten",
                        path, why)
    model_device = next(parts.model.parameters()).device
    head = compute_text_head(parts.model, parts.tokenizer, prompts, model_device).to(device)
    info.update(text_head_source="computed", text_head_sha256=head_sha256(head))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"head": head.cpu(), "sha256": info["text_head_sha256"], "tower": tower,
                        "prompts": prompts_digest}, tmp)
            os.replace(tmp, path)
        except OSError:
            info["cache_write_failed"] = True
            path.with_suffix(f".{os.getpid()}.tmp").unlink(missing_ok=True)
    return head, info


class ZeroShotClassifier(nn.Module):
    """``logits(x) = s · normalize(f(N(resize(x)))) · Tᵀ`` for images ``x`` in [0,1] at native resolution.

    The resize (bicubic, differentiable) and the normalisation are inside, so an attack acts on [0,1] pixels.
    ``features(x)`` gives, from the same forward pass, the unnormalised image embedding and the projected
    patch tokens (``ln_post(tokens) @ proj``) that text-guided attention needs.
    """

    def __init__(self, visual: nn.Module, head: torch.Tensor, *, image_size: int, logit_scale: float = LOGIT_SCALE,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD, resize: bool = True) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("head", head.detach().float())
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.image_size = int(image_size)
        self.logit_scale = float(logit_scale)
        self.resize = resize
        self.eval()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize and (x.shape[-1] != self.image_size or x.shape[-2] != self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image embedding [B, D] unnormalised, projected patch tokens [B, P, D] or None)."""
        v = self.visual
        has_tokens = hasattr(v, "output_tokens")
        if has_tokens:
            previous = v.output_tokens
            v.output_tokens = True
        try:
            out = v(self.prepare(x))
        finally:
            if has_tokens:
                v.output_tokens = previous
        if isinstance(out, tuple):
            pooled, tokens = out
            if getattr(v, "proj", None) is not None:
                tokens = tokens @ v.proj
            return pooled, tokens
        return out, None

    def logits_from_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(emb.float(), dim=-1) @ self.head.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.visual(self.prepare(x)))


def make_classifier(parts: CLIPParts, prompts: list[list[str]], *, device: torch.device | str = "cpu",
                    logit_scale: float = LOGIT_SCALE, cache: Path | None | bool = True,
                    visual: nn.Module | None = None) -> tuple[ZeroShotClassifier, dict[str, Any]]:
    """A :class:`ZeroShotClassifier` over ``parts`` (or a replacement ``visual``) for the given class prompts."""
    head, info = text_head(parts, prompts, device=device, cache=cache)
    clf = ZeroShotClassifier(visual if visual is not None else parts.visual, head, image_size=parts.image_size,
                             logit_scale=logit_scale, mean=parts.mean, std=parts.std).to(device)
    return clf, info
