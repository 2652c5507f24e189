"""The zero-shot classifier every defense and attack works on, and the class text heads it uses.

``logits(x) = s · normalize(f(N(resize(x)))) · Tᵀ`` (:class:`ZeroShotClassifier`): images in [0,1] at their native
resolution, the resize and normalisation inside. The class head ``T`` comes from the original text tower
(:func:`text_head`), cached on disk with its digest and checked when read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.paths import cache_dir
from zsrbench.models.clip import CLIP_MEAN, CLIP_STD, CLIPParts
from zsrbench.models.mha import exact_attention
from zsrbench.models.patch_embed import exact_patch_gradient
from zsrbench.models.traced import TracedTower
from zsrbench.models.weights import TORCH_LOAD_ERRORS, sha256_state

log = logging.getLogger("zsrbench")

LOGIT_SCALE = 100.0


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
        self.traced = TracedTower(visual)  # gradient-free passes, where bit-identical (not a submodule: no state)
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
        """float32 logits, also under autocast (the class head's product is cheap; attacks such as AutoAttack's
        Square keep float32 losses and need float32 logits)."""
        with torch.autocast(device_type=emb.device.type, enabled=False):
            return self.logit_scale * F.normalize(emb.float(), dim=-1) @ self.head.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.prepare(x)
        emb = self.traced(z) if self.traced.visual is self.visual else None
        return self.logits_from_embedding(self.visual(z) if emb is None else emb)


def make_classifier(parts: CLIPParts, prompts: list[list[str]], *, device: torch.device | str = "cpu",
                    logit_scale: float = LOGIT_SCALE, cache: Path | None | bool = True,
                    visual: nn.Module | None = None) -> tuple[ZeroShotClassifier, dict[str, Any]]:
    """A :class:`ZeroShotClassifier` over ``parts`` (or a replacement ``visual``) for the given class prompts."""
    head, info = text_head(parts, prompts, device=device, cache=cache)
    clf = ZeroShotClassifier(visual if visual is not None else parts.visual, head, image_size=parts.image_size,
                             logit_scale=logit_scale, mean=parts.mean, std=parts.std).to(device)
    exact_patch_gradient(clf.visual)  # an attack's input gradient through a ViT's patch embedding, faster, same bits
    exact_attention(clf.visual)  # its attention without nn.MultiheadAttention's layout copies, where the same bits
    return clf, info
