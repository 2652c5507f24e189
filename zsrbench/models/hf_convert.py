"""transformers ``CLIPModel`` weights as open_clip weights: the key map, as pure functions, and the architecture.

A transformers CLIP (``vision_model.*``, ``text_model.*``, ``visual_projection.weight``, ``text_projection.weight``,
``logit_scale``) holds the same tensors as an open_clip ``CLIP`` of the matching architecture, named differently:
each attention layer keeps q, k and v as three linear layers where open_clip packs them into one ``in_proj``
(q, k, v stacked in that order), and both projections are stored transposed (``nn.Linear`` weights). The
``position_ids`` buffers older transformers versions saved are dropped. :func:`arch_from_config` finds the open_clip
architecture from a ``config.json`` (its numbers only; ``_name_or_path`` does not matter).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from zsrbench.errors import ZsrError
from zsrbench.models.weights import show_keys

QKV = ("q_proj", "k_proj", "v_proj")
TRANSPOSED = frozenset({"visual.proj", "text_projection"})
# whole keys: open_clip name -> transformers name
FIXED = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.proj": "visual_projection.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "text_projection": "text_projection.weight",
    "logit_scale": "logit_scale",
}
# layer norms outside the blocks (weight and bias each)
NORMS = {"visual.ln_pre": "vision_model.pre_layrnorm", "visual.ln_post": "vision_model.post_layernorm",
         "ln_final": "text_model.final_layer_norm"}
for _oc, _hf in NORMS.items():
    FIXED.update({f"{_oc}.weight": f"{_hf}.weight", f"{_oc}.bias": f"{_hf}.bias"})
FIXED_INV = {v: k for k, v in FIXED.items()}
TOWERS = {"visual.transformer.resblocks.": "vision_model.encoder.layers.",
          "transformer.resblocks.": "text_model.encoder.layers."}
# inside one residual block: open_clip sub-name -> transformers sub-name
BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
         "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
BLOCK_INV = {v: k for k, v in BLOCK.items()}
DROPPED = re.compile(r"(vision_model|text_model)\.embeddings\.position_ids")

VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "projection_dim": 512}
TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}


def _split_block(key: str, towers: dict[str, str]) -> tuple[str, str, str] | None:
    """(the other naming's tower prefix + layer index, the sub-name, its last part) for a key inside a block."""
    for prefix, other in towers.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            if index.isdigit():
                sub, _, leaf = rest.rpartition(".")
                return f"{other}{index}.", sub, leaf
    return None


def openclip_to_hf_key(key: str) -> tuple[str, ...]:
    """The transformers name(s) of an open_clip key: three (q, k, v) for an ``in_proj``, one otherwise.

    An open_clip key with no transformers counterpart is a ``KeyError``.
    """
    if key in FIXED:
        return (FIXED[key],)
    found = _split_block(key, TOWERS)
    if found:
        head, sub, leaf = found
        if sub == "attn" and leaf in ("in_proj_weight", "in_proj_bias"):
            return tuple(f"{head}self_attn.{p}.{leaf.removeprefix('in_proj_')}" for p in QKV)
        if sub in BLOCK and leaf in ("weight", "bias"):
            return (f"{head}{BLOCK[sub]}.{leaf}",)
    raise KeyError(key)


def hf_to_openclip_key(key: str) -> tuple[str, int | None]:
    """(the open_clip name, the part 0/1/2 of a q/k/v projection inside ``in_proj``, else None) of a transformers
    key; a key with no open_clip counterpart (``position_ids`` included) is a ``KeyError``."""
    if key in FIXED_INV:
        return FIXED_INV[key], None
    found = _split_block(key, {v: k for k, v in TOWERS.items()})
    if found:
        head, sub, leaf = found
        if sub.startswith("self_attn.") and sub.split(".", 1)[1] in QKV and leaf in ("weight", "bias"):
            return f"{head}attn.in_proj_{leaf}", QKV.index(sub.split(".", 1)[1])
        if sub in BLOCK_INV and leaf in ("weight", "bias"):
            return f"{head}{BLOCK_INV[sub]}.{leaf}", None
    raise KeyError(key)


def openclip_to_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip CLIP state dict named and laid out as transformers' ``CLIPModel`` (new tensors)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        names = openclip_to_hf_key(key)
        if key in TRANSPOSED:
            tensor = tensor.t()
        pieces = tensor.chunk(3, dim=0) if len(names) == 3 else (tensor,)
        out.update({name: piece.contiguous().clone() for name, piece in zip(names, pieces, strict=True)})
    return out


def hf_to_openclip_state(state: dict[str, torch.Tensor], *, where: str = "The checkpoint") -> dict[str, torch.Tensor]:
    """A transformers ``CLIPModel`` (or ``CLIPVisionModelWithProjection``) state dict as open_clip's.

    Keys transformers has and open_clip lacks, or a q/k/v triple with a part missing, are a :class:`ZsrError`
    naming them (``where`` names the file); whether the result fits a model is for the caller to check.
    """
    out: dict[str, torch.Tensor] = {}
    packed: dict[str, dict[int, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        if DROPPED.fullmatch(key):
            continue
        try:
            name, part = hf_to_openclip_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if part is None:
            out[name] = tensor.t().contiguous() if name in TRANSPOSED else tensor
        else:
            packed.setdefault(name, {})[part] = tensor
    partial = sorted(f"{n} (has {'/'.join(QKV[i] for i in sorted(p))})" for n, p in packed.items() if len(p) != 3)
    if unknown or partial:
        found = "; ".join(text for text in (
            f"keys open_clip's CLIP has no place for: {show_keys(sorted(unknown))}" if unknown else "",
            f"attention layers missing q/k/v parts: {show_keys(partial)}" if partial else "") if text)
        raise ZsrError(f"{where} is not a complete transformers CLIPModel state dict ({found}). Pass the "
                       "model.safetensors (or pytorch_model.bin) saved by CLIPModel.save_pretrained or "
                       "CLIPVisionModelWithProjection.save_pretrained, unmodified, with its config.json.")
    out.update({name: torch.cat([p[0], p[1], p[2]], dim=0) for name, p in packed.items()})
    return out


# --- the architecture ----------------------------------------------------------------------------------------


def _sub(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A sub-config: ``<name>_config`` updated by the legacy ``<name>_config_dict`` (as transformers does)."""
    sub = config.get(f"{name}_config") or {}
    return {**sub, **(config.get(f"{name}_config_dict") or {})}


def tower_configs(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    """(vision config, text config or None for a vision-only model, projection dim), with transformers' defaults."""
    if config.get("model_type") == "clip_vision_model" or "vision_config" not in config and "hidden_size" in config:
        vision = {**VISION_DEFAULTS, **config}
        return vision, None, int(vision["projection_dim"])
    if config.get("model_type", "clip") != "clip":
        raise ZsrError(f"config.json says model_type '{config.get('model_type')}', not a CLIP model ('clip' or "
                       "'clip_vision_model'); only transformers CLIPModel checkpoints can be converted.")
    return ({**VISION_DEFAULTS, **_sub(config, "vision")}, {**TEXT_DEFAULTS, **_sub(config, "text")},
            int(config.get("projection_dim", 512)))


def config_activation(config: dict[str, Any]) -> str:
    """``"quick_gelu"`` or ``"gelu"``: the activation both towers of a transformers CLIP config use."""
    vision, text, _ = tower_configs(config)
    acts = {str(c["hidden_act"]) for c in (vision, text) if c is not None}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise ZsrError(f"config.json asks for the activation(s) {', '.join(sorted(acts))}; open_clip builds CLIP with "
                       "one activation for both towers, quick_gelu or gelu, so this checkpoint cannot be converted.")
    return acts.pop()


def _pair(value: Any) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


def _numbers_of_config(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The numbers an open_clip CLIP config fixes; None for anything but a plain ViT CLIP."""
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    plain = (set(cfg) <= {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}
             and set(v) <= {"image_size", "layers", "width", "head_width", "patch_size", "mlp_ratio"}
             and set(t) <= {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"})
    if not plain or not isinstance(v.get("layers"), int) or "patch_size" not in v:
        return None
    width, twidth = int(v["width"]), int(t.get("width", 512))
    return {"embed_dim": int(cfg["embed_dim"]), "quick_gelu": bool(cfg.get("quick_gelu", False)),
            "image_size": _pair(v.get("image_size", 224)), "patch_size": _pair(v["patch_size"]), "width": width,
            "layers": v["layers"], "heads": width // int(v.get("head_width", 64)),
            "mlp": int(width * float(v.get("mlp_ratio", 4.0))),
            "text": (int(t.get("context_length", 77)), int(t.get("vocab_size", 49408)), twidth,
                     int(t.get("heads", 8)), int(t.get("layers", 12)), int(twidth * float(t.get("mlp_ratio", 4.0))))}


def config_numbers(config: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a transformers CLIP config in :func:`_numbers_of_config`'s terms (no ``text`` if vision-only)."""
    vision, text, proj = tower_configs(config)
    out = {"embed_dim": proj, "quick_gelu": config_activation(config) == "quick_gelu",
           "image_size": _pair(vision["image_size"]), "patch_size": _pair(vision["patch_size"]),
           "width": int(vision["hidden_size"]), "layers": int(vision["num_hidden_layers"]),
           "heads": int(vision["num_attention_heads"]), "mlp": int(vision["intermediate_size"])}
    if text is not None:
        out["text"] = (int(text["max_position_embeddings"]), int(text["vocab_size"]), int(text["hidden_size"]),
                       int(text["num_attention_heads"]), int(text["num_hidden_layers"]), int(text["intermediate_size"]))
    return out


def arch_candidates(config: dict[str, Any]) -> list[str]:
    """The open_clip architectures (zsrbench's own configs included) whose numbers are the config's, simplest first
    (a vision-only config matches on the vision tower and projection only)."""
    from zsrbench.models.clip import _open_clip

    oc = _open_clip()
    want = config_numbers(config)
    found = []
    for name in oc.list_models():
        have = _numbers_of_config(oc.get_model_config(name) or {})
        if have is not None and all(have[k] == v for k, v in want.items()):
            found.append(name)
    return sorted(found, key=lambda n: (len(n), n))


def arch_from_config(config: dict[str, Any]) -> str:
    """The open_clip architecture name of a transformers CLIP ``config.json`` (``ViT-B-16``, ``ViT-L-14-quickgelu``,
    …): the one whose numbers and activation are the config's. None matching is a :class:`ZsrError`."""
    found = arch_candidates(config)
    if not found:
        n = config_numbers(config)
        raise ZsrError(
            f"No open_clip architecture matches this transformers CLIP config (vision: width {n['width']}, "
            f"{n['layers']} layers, {n['heads']} heads, patch {n['patch_size'][0]}, image {n['image_size'][0]}, "
            f"projection {n['embed_dim']}, {'quick_gelu' if n['quick_gelu'] else 'gelu'}"
            + (f"; text: context {n['text'][0]}, width {n['text'][2]}, {n['text'][4]} layers" if "text" in n else "")
            + "). Check config.json belongs to these weights, or add an open_clip model config with these numbers.")
    return found[0]
