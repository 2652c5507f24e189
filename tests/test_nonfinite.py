"""Non-finite logits (NaN/inf) count against the model: not correct clean, not robust under an attack.

The models are small ``nn.Module``s on the synthetic protocol's generated images (48 images, 3 classes), evaluated
through :func:`zsrbench.evaluation.unit.evaluate_dataset`; their flags go through the leaderboard's own consistency check.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from zsrbench.leaderboard import records, store
from zsrbench.leaderboard.records import metrics_from_flags
from zsrbench.leaderboard.schema import AttackConfig, Env, Flags, ModelInfo, ProtocolInfo, ResultRecord
from zsrbench.registry import ATTACKS, DATASETS, load_builtins
from zsrbench.evaluation.unit import evaluate_dataset

NOTE = "sample(s) with non-finite logits (NaN/inf): counted neither correct nor robust"


@pytest.fixture(scope="module")
def shapes():
    load_builtins()
    return DATASETS.get("synthetic_shapes").build(None, image_size=32)


def all_images(evalset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(evalset.dataset[i] for i in range(len(evalset))))
    return torch.stack([torch.as_tensor(x).float() for x in xs]), torch.as_tensor(ys)


class NaNWeights(torch.nn.Module):
    """A linear classifier whose weights are NaN: every logit is NaN (``argmax`` of such a row is a class index)."""

    def __init__(self, n_classes: int = 3, dim: int = 3 * 32 * 32) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(dim, n_classes)
        with torch.no_grad():
            self.fc.weight.fill_(float("nan"))

    def forward(self, x):
        return self.fc(x.flatten(1))


class NaNOffTheCleanImages(torch.nn.Module):
    """A perfect classifier on the stored clean images (a look-up) that returns NaN logits for any other input."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int = 3) -> None:
        super().__init__()
        self.register_buffer("images", images.flatten(1).clone())
        self.register_buffer("logits", 10.0 * torch.nn.functional.one_hot(labels, n_classes).float())
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # something to differentiate through

    def forward(self, x):
        f = x.flatten(1)
        dist = (f[:, None, :] - self.images[None]).abs().amax(2)  # [B, N] L∞ distance to each stored image
        d, j = dist.min(1)
        z = self.logits[j] + self.anchor * f.sum(1, keepdim=True)
        return torch.where((d == 0)[:, None], z, torch.full_like(z, float("nan")))


def evaluate(model, evalset, attacks=("pgd",), **params):
    specs = [ATTACKS.get(a) for a in attacks]
    conf = {s.name: s.config(**{k: v for k, v in params.items() if k in s.defaults}) for s in specs}
    indices = list(range(len(evalset)))
    flags, infos, _ = evaluate_dataset(model, evalset, indices, specs, conf, eps=4.0, seed=0, batch_size=16,
                                       device="cpu", precision="fp32")
    return flags, infos, metrics_from_flags(flags, evalset.info.num_classes, [s.name for s in specs]), specs, conf


def record_for(flags, metrics, specs, conf, infos) -> ResultRecord:
    """A minimal record around ``flags`` (as the runner writes one), for the leaderboard's checks."""
    n = int(flags["labels"].shape[0])
    return ResultRecord(
        zsrbench_version="0.1.0", git_sha=None, created_at="2025-01-01T00:00:00+00:00",
        model=ModelInfo(id="nan/toy/none", defense="clip", architecture="toy", pretrained=None, image_size=32),
        protocol=ProtocolInfo(
            name="toy", version=1, dataset="synthetic_shapes", split="generated", n_total=n, n_samples=n, seed=0,
            indices_digest="sha256:" + hashlib.sha256(json.dumps(list(range(n))).encode()).hexdigest(),
            templates=[["a photo of a {}"]], templates_digest="sha256:" + "0" * 64, input_mode="native",
            input_size=32, logit_scale=100.0, eps=4 / 255, eps_text="4/255", suite="+".join(s.name for s in specs),
            attacks=[AttackConfig(name=s.name, family=s.family, params=conf[s.name]) for s in specs],
            precision="fp32", success_criterion="last"),
        metrics=metrics, flags=Flags(**infos),
        env=Env(python="3.11", torch=torch.__version__, device="cpu", platform="test"))


def test_nan_weights_are_neither_correct_nor_robust(shapes, tmp_path):
    model = NaNWeights()
    flags, infos, m, specs, conf = evaluate(model, shapes, attacks=("pgd", "cw"), steps=2)
    n = len(shapes)
    labels = flags["labels"]
    with torch.no_grad():  # the old rule (argmax of a NaN row) would have called the label-0 samples correct
        assert (model(all_images(shapes)[0]).argmax(1).numpy() == labels).any()
    assert m.clean_accuracy == 0.0 and m.robust_accuracy == 0.0 and m.per_attack == {"pgd": 0.0, "cw": 0.0}
    assert m.n_nonfinite == n and flags["nonfinite"].dtype == bool and flags["nonfinite"].all()
    assert (flags["clean_pred"] == -1).all() and not flags["clean_correct"].any()
    assert f"{n} {NOTE}" in infos["notes"]
    # the leaderboard accepts these flags: the record's numbers are re-derivable from them
    rec = record_for(flags, m, specs, conf, infos)
    assert store.check_flags(rec, flags) == []
    path = records.write_result(tmp_path / "results", rec, flags)
    back = records.read_flags(path)
    assert metrics_from_flags(back, 3, ["pgd", "cw"]) == m
    assert store.add_measured(tmp_path / "board", [(path, records.read_record(path))])


def test_nan_only_under_attack_is_not_robust(shapes):
    images, labels = all_images(shapes)
    model = NaNOffTheCleanImages(images, labels)
    flags, infos, m, specs, conf = evaluate(model, shapes, attacks=("pgd",), steps=2)
    n = len(shapes)
    assert m.clean_accuracy == 1.0  # the clean images are classified perfectly, with finite logits
    # the attack's x_adv is NaN for the model: no sample counts as robust, whatever the attack's own verdict
    assert m.robust_accuracy == 0.0 and m.per_attack["pgd"] == 0.0
    assert m.n_nonfinite == n and flags["nonfinite"].all()
    assert f"{n} {NOTE}" in infos["notes"]
    # the attack alone would have called some of them robust: argmax of a NaN row can equal the label
    spec = ATTACKS.get("pgd")
    out = spec(model, images, labels, eps=4.0, seed=0, **conf["pgd"])
    assert not out.success.all()
    assert store.check_flags(record_for(flags, m, specs, conf, infos), flags) == []


def test_finite_model_has_no_nonfinite_samples(shapes):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 3))
    flags, infos, m, _, _ = evaluate(model, shapes, steps=2)
    assert m.n_nonfinite == 0 and not flags["nonfinite"].any()
    assert not any(NOTE in note for note in infos["notes"])
    # the clean predictions are the argmax, as before
    with torch.no_grad():
        assert np.array_equal(flags["clean_pred"], model(all_images(shapes)[0]).argmax(1).numpy())


def test_inf_in_one_class_and_old_sidecars():
    """+inf in a row is non-finite too; flags written before the array existed give n_nonfinite = 0."""
    labels = np.array([0, 1, 2, 0])
    flags = {"labels": labels, "clean_pred": np.array([0, 1, -1, 2]), "robust": np.array([True, False, False, False])}
    flags["clean_correct"] = flags["clean_pred"] == labels
    flags["robust__pgd"] = flags["robust"]
    assert metrics_from_flags(flags, 3, ["pgd"]).n_nonfinite == 0
    flags["nonfinite"] = np.array([False, False, True, False])
    m = metrics_from_flags(flags, 3, ["pgd"])
    assert m.n_nonfinite == 1 and m.clean_accuracy == 0.5 and m.robust_accuracy == 0.25


class InfForOneSample(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, 3)

    def forward(self, x):
        z = self.fc(x.flatten(1))
        hit = x.flatten(1)[:, 0] > 0.99  # pixel 0 saturated: a +inf logit for class 0
        return torch.cat([torch.where(hit, float("inf"), z[:, 0])[:, None], z[:, 1:]], 1)


def test_inf_clean_logits_are_not_correct(shapes):
    images, _ = all_images(shapes)
    x = images.clone()
    x[:5, 0, 0, 0] = 1.0  # five samples whose clean logits hold +inf

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return x.shape[0]

        def __getitem__(self, i):
            return x[i], int(shapes.dataset[i][1])

    from zsrbench.data.base import EvalSet

    torch.manual_seed(0)
    flags, infos, m, _, _ = evaluate(InfForOneSample(), EvalSet(info=shapes.info, dataset=Data()), steps=1)
    assert flags["nonfinite"][:5].all() and not flags["clean_correct"][:5].any()
    assert (flags["clean_pred"][:5] == -1).all()
    assert m.n_nonfinite >= 5


def test_nan_on_every_perturbed_point_is_never_robust_under_autoattack():
    """AutoAttack returns the clean point for a sample whose gradients are NaN: the points it tried judge it."""
    from linear_model import make_linear_problem
    from zsrbench.evaluation.unit import evaluate_unit
    from zsrbench.registry import ATTACKS

    model, x, y, _ = make_linear_problem(n=30, n_classes=10, eps=4 / 255, seed=3)
    x = (x * 255).round() / 255  # every clean pixel on the 1/255 grid

    class NaNOffGrid(torch.nn.Module):
        def forward(self, inp):
            z = model(inp)
            off = ((inp * 255 - (inp * 255).round()).abs() > 1e-4).flatten(1).any(1)
            return torch.where(off[:, None], torch.full_like(z, float("nan")), z)

    clf = NaNOffGrid()
    clean = clf(x).argmax(1) == y
    assert int(clean.sum()) >= 10
    spec = ATTACKS.get("aa-lite")
    unit = evaluate_unit(clf, x, y, [spec], {spec.name: spec.config(n_iter=10)}, eps=4.0, seed=0, index=0, start=0,
                         device="cpu", precision="fp32")
    assert not unit.robust["aa-lite"].any()  # was: the clean-correct samples AutoAttack gave up on stayed robust
    assert unit.nonfinite[clean.numpy()].all()
