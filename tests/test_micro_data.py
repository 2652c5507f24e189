"""The micro protocol's data, tasks, protocol registration and shipped weights (offline, CPU, < 40 s)."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from zsrbench.errors import ZsrError
from zsrbench.micro import generator as G
from zsrbench.micro import tasks as T

EXPECTED_CLASSES = {
    "micro_shape": 8, "micro_color": 7, "micro_pattern": 4, "micro_count": 4, "micro_size": 2,
    "micro_position": 4, "micro_background": 6,
}


def _scenes(n: int, seed: int, **kw) -> tuple[G.Scenes, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scenes = G.sample_scenes(n, g, **kw)
    state = g.get_state()
    images = G.render(scenes, g)
    g.set_state(state)
    masks = G.object_masks(scenes, g)
    return scenes, images, masks


# --- determinism ---------------------------------------------------------------------------------------------


def test_same_seed_same_bytes():
    a = _scenes(32, 7)
    b = _scenes(32, 7)
    assert torch.equal(a[1], b[1]) and a[1].dtype == torch.uint8 and a[1].shape == (32, 3, 32, 32)
    assert G.captions(a[0], 7) == G.captions(b[0], 7)
    c = _scenes(32, 8)
    assert not torch.equal(a[1], c[1])


def test_task_sets_are_fixed():
    T.generate_split.cache_clear()
    x1, y1 = T.generate_split("micro_count")
    T.generate_split.cache_clear()
    x2, y2 = T.generate_split("micro_count")
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # labels follow only from the seeds and the sampling code: pin them
    assert y1[:12].tolist() == T.generate_scenes("micro_count").count[:12].tolist()
    assert len(y1) == T.TEST_SIZE


# --- labels match what is drawn ------------------------------------------------------------------------------


def _components(mask: torch.Tensor) -> int:
    """4-connected components of a 2-D bool mask."""
    m = mask.tolist()
    h, w = len(m), len(m[0])
    seen = [[False] * w for _ in range(h)]
    n = 0
    for i in range(h):
        for j in range(w):
            if m[i][j] and not seen[i][j]:
                n += 1
                stack = [(i, j)]
                seen[i][j] = True
                while stack:
                    a, b = stack.pop()
                    for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        u, v = a + da, b + db
                        if 0 <= u < h and 0 <= v < w and m[u][v] and not seen[u][v]:
                            seen[u][v] = True
                            stack.append((u, v))
    return n


def test_count_is_the_number_of_drawn_objects():
    scenes, _, masks = _scenes(120, 3, balanced="count")
    counts = [_components(masks[i]) for i in range(len(scenes))]
    assert counts == [int(c) + 1 for c in scenes.count]


def test_colour_position_and_size_are_drawn():
    scenes, images, masks = _scenes(200, 4, fixed={"pattern": 0})  # solid fill: object pixels have the colour
    palette = torch.tensor(list(G.COLORS.values()))
    x = images.float() / 255
    for i in range(len(scenes)):
        m = masks[i]
        assert m.any()
        mean = x[i][:, m].mean(1)
        dist = (palette - mean).norm(dim=1)
        assert int(dist.argmin()) == int(scenes.color[i]), (i, mean, scenes.row(i))
        if scenes.position[i] >= 0:  # a lone object lies in its half
            ys, xs = m.nonzero(as_tuple=True)
            cx, cy = xs.float().mean(), ys.float().mean()
            side = G.POSITIONS[int(scenes.position[i])]
            ok = {"on the left": cx < 15.5, "on the right": cx > 15.5, "at the top": cy < 15.5,
                  "at the bottom": cy > 15.5}[side]
            assert ok, (side, float(cx), float(cy))
    # a large object covers more pixels than any small one of the same shape
    area = masks.flatten(1).sum(1).float() / (scenes.count + 1).float()
    for s in range(len(G.SHAPES)):
        small = area[(scenes.shape == s) & (scenes.size == 0)]
        large = area[(scenes.shape == s) & (scenes.size == 1)]
        if len(small) and len(large):
            assert small.max() < large.min(), G.SHAPES[s]


def test_no_colour_on_the_background_that_hides_it():
    scenes = G.sample_scenes(2000, torch.Generator().manual_seed(5))
    names, colours = list(G.BACKGROUNDS), list(G.COLORS)
    for b, c in G.CONFLICTS.items():
        assert not ((scenes.background == names.index(b)) & (scenes.color == colours.index(c))).any()


# --- captions ------------------------------------------------------------------------------------------------


def test_captions_name_the_attributes():
    scenes = G.sample_scenes(400, torch.Generator().manual_seed(6))
    caps = G.captions(scenes, 6)
    count_words = {0: ("a ", "one ", "a single "), 1: ("two ",), 2: ("three ",), 3: ("four ",)}
    for i, cap in enumerate(caps):
        row = scenes.row(i)
        words = set(re.findall(r"[a-z]+", cap))
        shape = G.SHAPES[row["shape"]]
        assert shape in words or G._noun(shape, True) in words, cap
        assert any(w in cap + " " for w in count_words[row["count"]]), cap
        adjs = [G.SIZES[row["size"]], G.PATTERNS[row["pattern"]], list(G.COLORS)[row["color"]]]
        assert sum(a in words for a in adjs) >= 2, cap
        # no attribute word of another class
        for attr, names in (("color", list(G.COLORS)), ("pattern", G.PATTERNS), ("size", G.SIZES),
                            ("background", list(G.BACKGROUNDS))):
            wrong = set(names) - {names[row[attr]]}
            assert not (wrong & words), (cap, wrong & words)
        if row["position"] < 0:
            assert not any(p in cap for p in G.POSITIONS), cap


def test_captions_never_contain_a_zero_shot_prompt():
    """The forbidden use: a prompt (template + one class name) of any task inside a pretraining caption.

    Class names do appear in captions (that is how the model learns them), always next to at least two
    other attribute words, never in the exact phrasing of a task prompt.
    """
    forbidden = G.forbidden_phrases(T.all_prompts())
    assert len(forbidden) == sum(EXPECTED_CLASSES.values())
    caps = []
    for step in range(4):  # what pretraining sees: hard-negative groups, the varied attribute always named
        scenes, varied = G.sample_groups(256, torch.Generator().manual_seed(step))
        caps += G.captions(scenes, step, keep=varied)
    caps += G.captions(G.sample_scenes(2000, torch.Generator().manual_seed(11)), 11)
    for cap in caps:
        low = cap.lower()
        for p in forbidden:
            assert p not in low, (p, cap)
    # and every held-out class name does occur in some caption
    text = " ".join(caps)
    for name in T.HELD_OUT:
        task = T.TASKS[name]
        for c in task.classnames:
            word = c.split()[0] if name == "micro_count" else c
            assert word in text, (name, c)


# --- tasks and the protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED_CLASSES))
def test_task_classes_and_balance(name):
    import zsrbench.micro  # noqa: F401  (registers)
    from zsrbench.registry import DATASETS

    ev = DATASETS.get(name).build(None, split="test")
    assert ev.info.num_classes == EXPECTED_CLASSES[name] == len(T.TASKS[name].classnames)
    assert len(ev) == T.TEST_SIZE
    labels = torch.tensor([ev.dataset[i][1] for i in range(len(ev))])
    counts = torch.bincount(labels, minlength=ev.info.num_classes)
    assert int(counts.max() - counts.min()) <= 1
    x, _ = ev.dataset[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_splits_and_protocol():
    import zsrbench.micro  # noqa: F401
    from zsrbench.registry import DATASETS, PROTOCOLS

    train = DATASETS.get("micro_shape").build(None, split="train")
    assert len(train) == T.TRAIN_SIZE and train.info.split == "train"
    with pytest.raises(ZsrError):
        DATASETS.get("micro_color").build(None, split="train")
    check = DATASETS.get("micro_color").build(None, split="check")
    assert len(check) == T.CHECK_SIZE and check.extra["seed"] != T.TASKS["micro_color"].seed
    p = PROTOCOLS.get("micro")
    assert p.datasets[0] == p.train_dataset == "micro_shape" and len(p.zero_shot_datasets()) >= 6
    assert p.default_model == "zsr-micro" and p.default_pretrained == "zsrbench"
    assert not p.needs_data_root and p.normalised_average and p.eps in p.eps_sweep == (1.0, 2.0, 4.0, 8.0)
    assert all(not DATASETS.get(d).needs_root for d in p.datasets)
    # test and train scenes never share a seed with pretraining
    from zsrbench.micro.pretrain import PRETRAIN_SEED_BASE

    seeds = [T.split_spec(t.name, sp)[0] for t in T.TASK_LIST for sp in ("test", "check")] + [T.TRAIN_SEED]
    assert len(set(seeds)) == len(seeds) and max(seeds) < PRETRAIN_SEED_BASE


# --- the shipped weights -------------------------------------------------------------------------------------


def test_shipped_weights_match_manifest_and_load():
    from zsrbench.models.shipped import resolve_micro_weights, resolve_pretrained, verify_weights
    from zsrbench.models.clip import CONFIG_DIR, build_clip

    folder = resolve_micro_weights()
    manifest = verify_weights()  # sha256 of the file == manifest
    weights = folder / manifest["weights_file"]
    assert weights.stat().st_size <= 16 * 2**20
    cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg == json.loads((CONFIG_DIR / "zsr-micro.json").read_text()) == manifest["config"]
    for key in ("seed", "steps", "command", "versions", "loss_curve", "clean_zero_shot", "generator"):
        assert key in manifest
    assert manifest["generator"]["version"] == G.GENERATOR_VERSION
    parts = build_clip(f"local-dir:{folder}")
    assert parts.image_size == 32 and parts.source["weights_sha256"] == manifest["weights_sha256"]
    # the same weights through the architecture name + the pretrained tag (which resolves to the file)
    assert resolve_pretrained("zsr-micro", "zsrbench") == str(weights)
    assert resolve_pretrained("zsr-micro", None) is None
    parts2 = build_clip("zsr-micro", "zsrbench")
    assert parts2.source["weights_sha256"] == manifest["weights_sha256"]
    a, b = parts.model.state_dict(), parts2.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_model_beats_chance_on_a_held_out_task():
    from zsrbench.models.shipped import local_dir_name
    from zsrbench.models.clip import build_clip
    from zsrbench.models.classifier import make_classifier

    parts = build_clip(local_dir_name())
    task = T.TASKS["micro_background"]
    clf, _ = make_classifier(parts, [[p] for p in task.prompts()], cache=False)
    x, y = T.generate_split(task.name)
    with torch.no_grad():
        acc = float((clf(x.float() / 255).argmax(1) == y).float().mean())
    assert acc > 1.0 / len(task.classnames) + 0.2


def test_caption_rng_is_independent_of_global_state():
    scenes = G.sample_scenes(20, torch.Generator().manual_seed(1))
    random.seed(123)
    a = G.captions(scenes, 3)
    random.seed(456)
    torch.manual_seed(0)
    assert G.captions(scenes, 3) == a


def test_eps_follows_the_stated_rule():
    from zsrbench.micro import protocol as P

    m = P.EPS_SWEEP_MEASUREMENT
    held = [n for n in T.HELD_OUT]
    assert set(m) == set(T.TASKS)
    mean_clean = sum(m[n]["clean"] for n in held) / len(held)
    mean_robust = {e: sum(m[n][f"{e:g}"] for n in held) / len(held) for e in P.EPS_SWEEP}
    assert P.choose_eps(mean_clean, mean_robust) == P.EPS == P.MICRO.eps
    assert P.MICRO.attack_defaults["pgd"] == {"steps": P.PGD_STEPS, "step": P.EPS * P.PGD_STEP_FRACTION}
