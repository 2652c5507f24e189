"""The strict loader of every checkpoint format (zsrbench.models.formats) and the transformers key map
(zsrbench.models.hf_convert), on tiny random open_clip models: each format loads to exactly the tensors written,
with the features a hand-mapped ``load_state_dict`` gives, and each way a checkpoint can fail to fit is a
one-paragraph ZsrError naming what to do. The big architectures (ViT-B-16, ViT-L-14) are only built on ``meta``."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from zsrbench.errors import ZsrError
from zsrbench.models import hf_convert
from zsrbench.models.clip import CLIPParts, _open_clip
from zsrbench.models.formats import check_activation, detect_format, load_any
from zsrbench.models.weights import sha256_file

TINY = "zsr-tiny"  # QuickGELU, vision width 32 / 2 layers / 2 heads / patch 8 / 32 px; text ctx 16, width 32, 1 layer


def _build(arch):
    torch.manual_seed(1)
    return _open_clip().create_model(arch).eval()


@pytest.fixture(scope="module")
def tiny():
    """A random zsr-tiny whose tensors are all distinct from a fresh build's (so a load that did nothing shows)."""
    model = _build(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _state(model, prefix=""):
    return {k.removeprefix(prefix): v.clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def _reference(state, arch=TINY, visual_only=False):
    """The hand-mapped load the loaders must equal."""
    model = _build(arch)
    (model.visual if visual_only else model).load_state_dict(state, strict=True)
    return model


def _assert_same(parts, model, images, prefix=""):
    loaded, want = parts.model.state_dict(), model.state_dict()
    assert set(loaded) == set(want)
    assert all(torch.equal(loaded[k], want[k]) for k in want if k.startswith(prefix))
    with torch.no_grad():
        assert torch.equal(parts.model.encode_image(images), model.encode_image(images))


def _one_paragraph(exc):
    text = str(exc.value)
    assert "\n" not in text and len(text) < 1200, text
    return text


# --- open_clip folders -----------------------------------------------------------------------------------


def _open_clip_folder(folder, model, weights="open_clip_model.safetensors", state=None):
    folder.mkdir()
    cfg = {"model_cfg": _open_clip().get_model_config(TINY),
           "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    state = _state(model) if state is None else state
    (save_file if weights.endswith(".safetensors") else torch.save)(state, folder / weights)
    return folder / weights


@pytest.mark.parametrize("weights", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_open_clip_folder_brings_its_own_preprocessing_and_tokenizer(tmp_path, tiny, images, weights):
    wfile = _open_clip_folder(tmp_path / "m", tiny, weights)
    assert detect_format(tmp_path / "m") == "open_clip" and detect_format(wfile) == "open_clip"
    parts = load_any(tmp_path / "m", logit_scale=100.0)
    _assert_same(parts, tiny, images)
    assert parts.mean == (0.5, 0.4, 0.3) and parts.std == (0.2, 0.25, 0.3) and parts.image_size == 32
    assert parts.tokenizer(["a photo of a cat"]).shape == (1, 16)  # the config's context length
    src = parts.source
    assert src["format"] == "open_clip" and src["checkpoint_sha256"] == sha256_file(wfile)
    assert src["logit_scale_origin"] == "checkpoint"
    assert math.isclose(src["logit_scale"], float(tiny.logit_scale.detach().exp()), rel_tol=1e-6)


def test_open_clip_folder_is_strict_even_where_open_clip_would_resize(tmp_path, tiny):
    state = _state(tiny)
    state["visual.positional_embedding"] = torch.zeros(10, 32)  # open_clip alone would interpolate it silently
    state.pop("ln_final.bias")
    _open_clip_folder(tmp_path / "m", tiny, state=state)
    with pytest.raises(ZsrError) as exc:
        load_any(tmp_path / "m")
    text = _one_paragraph(exc)
    assert "missing keys: ln_final.bias" in text and "shape mismatch: visual.positional_embedding" in text


# --- visual-encoder state dicts ----------------------------------------------------------------------------


VISUAL_LAYOUTS = {
    "raw.pt": lambda s: s,
    "prefixed.pt": lambda s: {f"visual.{k}": v for k, v in s.items()},
    "module.pt": lambda s: {f"module.{k}": v for k, v in s.items()},
    "module-visual.pt": lambda s: {f"module.visual.{k}": v for k, v in s.items()},
    "wrapped-state.pt": lambda s: {"state_dict": s, "epoch": 7},
    "wrapped-model.pth": lambda s: {"model": {f"module.{k}": v for k, v in s.items()}},
    "raw.safetensors": lambda s: s,
}


@pytest.mark.parametrize("name", sorted(VISUAL_LAYOUTS))
def test_visual_state_dict_with_any_prefix_or_wrapper(tmp_path, tiny, images, name):
    state = _state(tiny, "visual.")
    obj = VISUAL_LAYOUTS[name](state)
    (save_file if name.endswith(".safetensors") else torch.save)(obj, tmp_path / name)
    assert detect_format(tmp_path / name) == "visual"
    parts = load_any(tmp_path / name, architecture=TINY, activation="quick_gelu")
    _assert_same(parts, _reference(state, visual_only=True), images, prefix="visual.")
    assert parts.source["format"] == "visual" and parts.source["logit_scale_origin"] == "base_model"
    assert parts.source["checkpoint_sha256"] == sha256_file(tmp_path / name)


def test_logit_scale_from_the_caller_or_the_checkpoint(tmp_path, tiny):
    torch.save(_state(tiny, "visual."), tmp_path / "v.pt")
    parts = load_any(tmp_path / "v.pt", architecture=TINY, logit_scale=100)
    assert (parts.source["logit_scale"], parts.source["logit_scale_origin"]) == (100.0, "catalogue")
    torch.save({"state_dict": _state(tiny)}, tmp_path / "full.pt")  # a whole CLIP: the visual part, its scale
    parts = load_any(tmp_path / "full.pt", architecture=TINY, logit_scale=100)
    assert parts.source["logit_scale_origin"] == "checkpoint"
    assert math.isclose(parts.source["logit_scale"], float(tiny.logit_scale.detach().exp()), rel_tol=1e-6)
    with pytest.raises(ZsrError, match="positive"):
        load_any(tmp_path / "v.pt", architecture=TINY, logit_scale=-1)


def _openai_visual_keys(layers):
    """The state-dict names of openai/CLIP's VisionTransformer, written from its structure."""
    block = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
             "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    return {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
            "ln_post.weight", "ln_post.bias", "proj",
            *(f"transformer.resblocks.{i}.{b}" for i in range(layers) for b in block)}


@pytest.mark.parametrize("arch,layers", [(TINY, 2), ("ViT-B-16", 12), ("ViT-L-14-quickgelu", 24)])
def test_openai_vision_transformer_names_are_open_clips(arch, layers):
    with torch.device("meta"):
        model = _open_clip().create_model(arch, device="meta")
    assert set(model.visual.state_dict()) == _openai_visual_keys(layers)


def test_vision_encoder_state_dict(tmp_path, tiny, images):
    state = _state(tiny, "visual.")
    assert set(state) == _openai_visual_keys(2)
    torch.save({"vision_encoder_state_dict": state, "epoch": 10, "best_acc": 0.3}, tmp_path / "tecoa.pth.tar")
    assert detect_format(tmp_path / "tecoa.pth.tar") == "vision_encoder_state_dict"
    parts = load_any(tmp_path / "tecoa.pth.tar", architecture=TINY)
    _assert_same(parts, _reference(state, visual_only=True), images, prefix="visual.")
    assert parts.source["format"] == "vision_encoder_state_dict"
    with pytest.raises(ZsrError, match="no 'vision_encoder_state_dict' entry"):
        torch.save(state, tmp_path / "plain.pt")
        load_any(tmp_path / "plain.pt", fmt="vision_encoder_state_dict", architecture=TINY)


# --- the transformers key map ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["ViT-B-16", "ViT-L-14-quickgelu"])
def test_transformers_map_is_a_bijection_on_big_models(arch):
    with torch.device("meta"):
        own = _open_clip().create_model(arch, device="meta").state_dict()
    hf_names = [n for k in own for n in hf_convert.openclip_to_hf_key(k)]
    assert len(hf_names) == len(set(hf_names)) == len(own) + 2 * sum(k.endswith("in_proj_weight") or
                                                                     k.endswith("in_proj_bias") for k in own)
    back = {hf_convert.hf_to_openclip_key(n) for n in hf_names}
    assert {name for name, _ in back} == set(own) and len(back) == len(hf_names)
    hf = hf_convert.openclip_to_hf_state(own)
    assert set(hf) == set(hf_names)
    for name in ("vision_model.pre_layrnorm.weight", "vision_model.post_layernorm.bias",
                 "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.0.mlp.fc1.weight",
                 "text_model.encoder.layers.11.self_attn.v_proj.bias", "text_model.final_layer_norm.weight",
                 "visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert name in hf
    assert hf["visual_projection.weight"].shape == own["visual.proj"].t().shape
    round_trip = hf_convert.hf_to_openclip_state(hf)
    assert {k: v.shape for k, v in round_trip.items()} == {k: v.shape for k, v in own.items()}


def _hf_config(arch, act, vision_only=False, **extra):
    cfg = _open_clip().get_model_config(arch)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    vision = {"hidden_size": v["width"], "intermediate_size": 4 * v["width"], "num_hidden_layers": v["layers"],
              "num_attention_heads": v["width"] // v.get("head_width", 64), "image_size": v["image_size"],
              "patch_size": v["patch_size"], "hidden_act": act}
    if vision_only:
        return {"model_type": "clip_vision_model", **vision, "projection_dim": cfg["embed_dim"], **extra}
    text = {"hidden_size": t["width"], "intermediate_size": 4 * t["width"], "num_hidden_layers": t["layers"],
            "num_attention_heads": t["heads"], "max_position_embeddings": t["context_length"], "hidden_act": act}
    return {"_name_or_path": "someone/else", "model_type": "clip", "projection_dim": cfg["embed_dim"],
            "vision_config": vision, "text_config": text, **extra}


def test_architecture_from_the_config_numbers_only():
    assert hf_convert.arch_from_config(_hf_config("ViT-B-16", "gelu")) == "ViT-B-16"
    assert hf_convert.arch_from_config(_hf_config("ViT-L-14", "quick_gelu")) == "ViT-L-14-quickgelu"
    assert hf_convert.arch_from_config(_hf_config("ViT-B-32", "quick_gelu")) == "ViT-B-32-quickgelu"
    assert hf_convert.arch_from_config(_hf_config(TINY, "quick_gelu")) == TINY
    legacy = {"model_type": "clip", "vision_config": {"patch_size": 16}, "text_config": {}}  # transformers' defaults
    assert hf_convert.arch_from_config(legacy) == "ViT-B-16-quickgelu"
    odd = _hf_config("ViT-B-16", "gelu")
    odd["vision_config"]["num_hidden_layers"] = 7
    with pytest.raises(ZsrError, match="No open_clip architecture matches") as exc:
        hf_convert.arch_from_config(odd)
    _one_paragraph(exc)


def test_qkv_split_and_concat_are_exact(tiny):
    own = tiny.state_dict()
    hf = hf_convert.openclip_to_hf_state(own)
    w = own["visual.transformer.resblocks.1.attn.in_proj_weight"]
    q, k, v = (hf[f"vision_model.encoder.layers.1.self_attn.{p}_proj.weight"] for p in "qkv")
    assert torch.equal(torch.cat([q, k, v]), w) and torch.equal(k, w[32:64])
    assert torch.equal(hf["text_model.encoder.layers.0.self_attn.v_proj.bias"],
                       own["transformer.resblocks.0.attn.in_proj_bias"][64:])
    assert torch.equal(hf["text_projection.weight"], own["text_projection"].t())
    back = hf_convert.hf_to_openclip_state(hf)
    assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)


def test_converted_state_with_a_stray_or_partial_key_is_refused(tiny):
    hf = hf_convert.openclip_to_hf_state(tiny.state_dict())
    hf["vision_model.encoder.layers.0.self_attn.rope.freq"] = torch.zeros(1)
    del hf["text_model.encoder.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(ZsrError) as exc:
        hf_convert.hf_to_openclip_state(hf)
    text = _one_paragraph(exc)
    assert "rope.freq" in text and "transformer.resblocks.0.attn.in_proj_weight (has q_proj/v_proj)" in text


# --- transformers folders ----------------------------------------------------------------------------------


def _hf_folder(folder, tiny, cfg, *, vision_only=False, preprocess=True):
    folder.mkdir()
    state = hf_convert.openclip_to_hf_state(_state(tiny))
    if vision_only:
        state = {k: v for k, v in state.items() if k.startswith(("vision_model.", "visual_projection."))}
    else:  # older transformers saved the position ids: they are dropped
        state["text_model.embeddings.position_ids"] = torch.arange(16)[None]
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg))
    if preprocess:
        (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3],
                                                                     "image_std": [0.4, 0.5, 0.6]}))
    return folder


def test_transformers_clip_model_folder(tmp_path, tiny, images):
    folder = _hf_folder(tmp_path / "hf", tiny, _hf_config(TINY, "quick_gelu"))
    assert detect_format(folder) == "transformers" and detect_format(folder / "model.safetensors") == "transformers"
    parts = load_any(folder, logit_scale=100)
    assert parts.name == TINY and parts.mean == (0.1, 0.2, 0.3) and parts.std == (0.4, 0.5, 0.6)
    _assert_same(parts, _reference(_state(tiny)), images)
    with torch.no_grad():
        tokens = parts.tokenizer(["a photo of a cat"])
        assert torch.equal(parts.model.encode_text(tokens), tiny.encode_text(tokens))
    src = parts.source
    assert src["format"] == "transformers" and src["logit_scale_origin"] == "checkpoint"
    assert src["checkpoint_sha256"] == sha256_file(folder / "model.safetensors")
    assert not any(n.startswith("random initialisation") for n in src["notes"])


def test_transformers_vision_model_with_projection(tmp_path, tiny, images):
    folder = _hf_folder(tmp_path / "hfv", tiny, _hf_config(TINY, "quick_gelu", vision_only=True),
                        vision_only=True, preprocess=False)
    parts = load_any(folder)
    assert parts.name == TINY and parts.source["logit_scale_origin"] == "base_model"
    _assert_same(parts, _reference(_state(tiny, "visual."), visual_only=True), images, prefix="visual.")


def test_transformers_weights_without_their_config_are_refused(tmp_path, tiny):
    save_file(hf_convert.openclip_to_hf_state(_state(tiny)), tmp_path / "clip.safetensors")
    with pytest.raises(ZsrError, match="without its config.json") as exc:
        detect_format(tmp_path / "clip.safetensors")
    _one_paragraph(exc)


def test_real_transformers_clip_gives_the_same_features(tmp_path, images):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    cfg = transformers.CLIPConfig(**{k: v for k, v in _hf_config(TINY, "quick_gelu").items() if k != "model_type"})
    hf_model = transformers.CLIPModel(cfg).eval()
    hf_model.save_pretrained(tmp_path / "saved")
    parts = load_any(tmp_path / "saved")
    assert parts.name == TINY

    def out(x):
        return x if isinstance(x, torch.Tensor) else x.pooler_output

    with torch.no_grad():
        tokens = parts.tokenizer(["a photo of a cat", "a dog"])
        hf_image = out(hf_model.get_image_features(pixel_values=images))
        torch.testing.assert_close(parts.model.encode_image(images), hf_image)
        torch.testing.assert_close(parts.model.encode_text(tokens), out(hf_model.get_text_features(input_ids=tokens)))
    assert math.isclose(parts.source["logit_scale"], float(hf_model.logit_scale.detach().exp()), rel_tol=1e-6)


# --- failures ----------------------------------------------------------------------------------------------


def _visual_error(tmp_path, state, **kwargs):
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ZsrError) as exc:
        load_any(tmp_path / "bad.pt", architecture=TINY, **kwargs)
    return _one_paragraph(exc)


def test_missing_extra_and_misshaped_keys_are_named(tmp_path, tiny):
    state = _state(tiny, "visual.")
    missing = {k: v for k, v in state.items() if k != "proj"}
    assert "missing keys: proj" in _visual_error(tmp_path, missing)
    assert "unexpected keys: extra.weight" in _visual_error(tmp_path, {**state, "extra.weight": torch.zeros(1)})
    text = _visual_error(tmp_path, {**state, "positional_embedding": torch.zeros(50, 32)})
    assert "shape mismatch: positional_embedding (checkpoint [50, 32], model [17, 32])" in text
    text = _visual_error(tmp_path, {k: v for k, v in state.items() if "resblocks" not in k})
    assert "… and 19 more" in text and "architecture" in text


def test_wrong_activation_is_refused_with_the_architecture_to_use(tmp_path, tiny):
    folder = _hf_folder(tmp_path / "hf", tiny, _hf_config(TINY, "quick_gelu"))
    with pytest.raises(ZsrError, match="needs QuickGELU .* built with GELU") as exc:
        load_any(folder, architecture="zsr-micro")  # a GELU architecture
    _one_paragraph(exc)
    with pytest.raises(ZsrError, match="declared to use gelu"):
        load_any(folder, activation="gelu")
    text = _visual_error(tmp_path, _state(tiny, "visual."), activation="gelu")
    assert "needs GELU" in text and "built with QuickGELU" in text
    with torch.device("meta"):
        big = _open_clip().create_model("ViT-L-14", device="meta")
    with pytest.raises(ZsrError, match="use ViT-L-14-quickgelu"):
        check_activation(CLIPParts(big, None, "ViT-L-14", None, 224), "quick_gelu", "declared")


class Opaque:
    """A pickled object that weights_only loading must refuse."""


def test_pickled_objects_need_trust(tmp_path, tiny):
    obj = {"vision_encoder_state_dict": _state(tiny, "visual."), "args": Opaque()}
    torch.save(obj, tmp_path / "pickled.pt")
    for call in (lambda: detect_format(tmp_path / "pickled.pt"),
                 lambda: load_any(tmp_path / "pickled.pt", fmt="vision_encoder_state_dict", architecture=TINY)):
        with pytest.raises(ZsrError, match="--trust-checkpoint") as exc:
            call()
        _one_paragraph(exc)
    parts = load_any(tmp_path / "pickled.pt", architecture=TINY, trust=True)
    assert parts.source["checkpoint_trusted"] is True


def test_unknown_things_are_user_errors(tmp_path):
    with pytest.raises(ZsrError, match="does not exist"):
        load_any(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZsrError, match="format is unknown"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ZsrError, match="Unknown checkpoint format"):
        load_any(tmp_path / "empty", fmt="onnx")
