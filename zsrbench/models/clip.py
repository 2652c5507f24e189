"""Building CLIP through open_clip: names, tags, folders and a strict visual checkpoint on top.

Model names: an open_clip architecture (``ViT-B-32-quickgelu``) with a pretrained tag (``openai``), an
``hf-hub:org/repo`` id, a ``local-dir:/path`` folder (``open_clip_config.json`` + weights, as ``zsrbench
train`` writes), or one of zsrbench's own configs (``zsr-tiny``); the tag ``zsrbench`` is the micro CLIP that ships
in the package (:mod:`zsrbench.models.shipped`). A visual-encoder checkpoint file (the format the published
defenses use) can then replace the visual weights, strictly. Weights files are read and checked in
:mod:`zsrbench.models.weights`; the classifier built on the result is :mod:`zsrbench.models.classifier`.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zsrbench.errors import ZsrError
from zsrbench.models.weights import (
    _QuietRootLogger, check_model_folder, check_model_weights, folder_weights, load_visual_checkpoint, refuse_nonfinite,
    sha256_file, sha256_state, short_error,
)
from zsrbench.paths import portable_path

log = logging.getLogger("zsrbench")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
SHIPPED_TAG = "zsrbench"  # pretrained tag of the weights that ship inside the package


def _open_clip():
    import open_clip

    if not getattr(open_clip, "_zsrbench_configs", False):
        open_clip.add_model_config(CONFIG_DIR)
        open_clip._zsrbench_configs = True
    return open_clip


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
        from zsrbench.models.shipped import resolve_pretrained

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


# --- the zero-shot classifier ------------------------------------------------------------------------------


