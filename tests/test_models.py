
import pytest
import torch

from zsrbench.errors import ZsrError
from zsrbench.models.classifier import ZeroShotClassifier, make_classifier
from zsrbench.models.clip import build_clip, resolve_arch
from zsrbench.models.weights import extract_visual_state, load_visual_checkpoint, sha256_file


def test_openai_weights_get_quickgelu():
    name, notes = resolve_arch("ViT-B-32", "openai")
    assert name == "ViT-B-32-quickgelu" and notes
    assert resolve_arch("ViT-B-32-quickgelu", "openai") == ("ViT-B-32-quickgelu", [])
    assert resolve_arch("ViT-B-32", None)[0] == "ViT-B-32"


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(ZsrError, match="Did you mean"):
        build_clip("ViT-B-32-quickgel")


def test_visual_checkpoint_formats_load_strictly(tmp_path, tiny_parts):
    state = {k: v.clone() + 1.0 for k, v in tiny_parts.visual.state_dict().items()}
    formats = {
        "raw.pt": state,
        "wrapped.pt": {"vision_encoder_state_dict": state, "epoch": 3},
        "module.pt": {f"module.{k}": v for k, v in state.items()},
        "full.pt": {"state_dict": {f"visual.{k}": v for k, v in state.items()} | {"logit_scale": torch.tensor(1.0)}},
    }
    for fname, obj in formats.items():
        torch.save(obj, tmp_path / fname)
        parts = build_clip("zsr-tiny", checkpoint=tmp_path / fname)
        loaded = parts.visual.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state), fname
        assert parts.source["checkpoint_sha256"] == sha256_file(tmp_path / fname)


def test_wrong_keys_are_listed(tmp_path, tiny_parts):
    state = dict(tiny_parts.visual.state_dict())
    state.pop("proj")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ZsrError) as exc:
        load_visual_checkpoint(tiny_parts.model, tmp_path / "bad.pt")
    assert "missing keys: proj" in str(exc.value) and "unexpected keys: extra.weight" in str(exc.value)


def test_shape_mismatch_is_listed(tmp_path, tiny_parts):
    state = dict(tiny_parts.visual.state_dict())
    state["proj"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ZsrError, match="shape mismatch: proj"):
        load_visual_checkpoint(tiny_parts.model, tmp_path / "bad.pt")


def test_sha256_mismatch_refused(tmp_path, tiny_parts):
    torch.save(tiny_parts.visual.state_dict(), tmp_path / "ok.pt")
    with pytest.raises(ZsrError, match="sha256"):
        load_visual_checkpoint(tiny_parts.model, tmp_path / "ok.pt", expected_sha256="0" * 64)
    info = load_visual_checkpoint(tiny_parts.model, tmp_path / "ok.pt", expected_sha256=sha256_file(tmp_path / "ok.pt"))
    assert info["checkpoint_sha256"] == sha256_file(tmp_path / "ok.pt")


class Opaque:
    """A pickled object that weights_only loading must refuse."""


def test_pickled_objects_need_explicit_trust(tmp_path, tiny_parts):
    obj = {"vision_encoder_state_dict": tiny_parts.visual.state_dict(), "args": Opaque()}
    torch.save(obj, tmp_path / "pickled.pt")
    with pytest.raises(ZsrError, match="--trust-checkpoint"):
        load_visual_checkpoint(tiny_parts.model, tmp_path / "pickled.pt")
    info = load_visual_checkpoint(tiny_parts.model, tmp_path / "pickled.pt", trust=True)
    assert info["checkpoint_trusted"] is True


def test_no_state_dict_is_a_user_error():
    with pytest.raises(ZsrError):
        extract_visual_state({"epoch": 1})


def test_text_head_cache_hit_on_second_run(tmp_path, tiny_parts):
    prompts = [["a photo of a cat"], ["a photo of a dog", "a picture of a dog"]]
    clf1, info1 = make_classifier(tiny_parts, prompts, cache=tmp_path)
    clf2, info2 = make_classifier(tiny_parts, prompts, cache=tmp_path)
    assert not info1["cache_hit"] and info2["cache_hit"]
    assert torch.equal(clf1.head, clf2.head)
    assert len(list((tmp_path / "text_heads").glob("*.pt"))) == 1
    _, info3 = make_classifier(tiny_parts, [["a photo of a cat"], ["a photo of a bird"]], cache=tmp_path)
    assert not info3["cache_hit"]  # other prompts, other key


@pytest.mark.parametrize("tamper", ["rolled", "rolled-with-digest", "plain-tensor", "nan"])
def test_a_changed_cached_text_head_is_never_used(tmp_path, tiny_parts, tamper, caplog):
    from zsrbench.models.classifier import head_sha256

    prompts = [[f"a photo of a {c}"] for c in ("cat", "dog", "bird", "car", "ship")]
    clf1, info1 = make_classifier(tiny_parts, prompts, cache=tmp_path)
    [path] = (tmp_path / "text_heads").glob("*.pt")
    blob = torch.load(path, weights_only=True)
    rolled = blob["head"].roll(1, dims=0)  # every class gets another class's embedding
    forged = {"rolled": {**blob, "head": rolled},
              "rolled-with-digest": {**blob, "head": rolled, "sha256": head_sha256(rolled)},  # a consistent forgery
              "plain-tensor": rolled, "nan": {**blob, "head": blob["head"] * float("nan")}}[tamper]
    torch.save(forged, path)
    with caplog.at_level("WARNING", logger="zsrbench"):
        clf2, info2 = make_classifier(tiny_parts, prompts, cache=tmp_path)
    assert torch.equal(clf1.head, clf2.head) and not info2["cache_hit"] and info2["text_head_source"] == "computed"
    assert "is not used" in caplog.text and str(path) in caplog.text
    assert info2["text_head_sha256"] == info1["text_head_sha256"] == head_sha256(clf1.head)
    _, info3 = make_classifier(tiny_parts, prompts, cache=tmp_path)  # the cache was rewritten, and is checked
    assert info3["cache_hit"] and info3["text_head_source"].startswith("cache")


def test_classifier_resizes_inside_and_is_differentiable(tiny_parts):
    clf, _ = make_classifier(tiny_parts, [["a"], ["b"], ["c"]], cache=False)
    assert isinstance(clf, ZeroShotClassifier) and not clf.training
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    logits = clf(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # logits are s * cosine: bounded by the logit scale
    assert logits.abs().max() <= clf.logit_scale + 1e-4
    x32 = torch.rand(2, 3, 32, 32)
    emb, tokens = clf.features(x32)
    assert tokens.shape == (2, 16, emb.shape[1])
    # one forward gives the same logits as the plain path
    assert torch.allclose(clf.logits_from_embedding(emb), clf(x32), atol=1e-5)
