"""Test-time defenses and adaptive attacks: BPDA, EOT, the non-adaptive (as published) number, and known answers.

* the purification reference (bit-depth reduction) looks robust to a naive white-box attack and falls to BPDA-PGD
  to within a few points of the undefended model;
* a randomised defense's EOT gradient is the brute-force average of its draws' gradients;
* on a defense that declares nothing, the adaptive suite is the plain one, flag for flag;
* bad input is one paragraph, exit 2, nothing written.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from zsrbench.attacks.pgd import eot_gradient, pgd_attack
from zsrbench.cli import app
from zsrbench.defenses.base import Defense
from zsrbench.defenses.purify import reduce_bit_depth
from zsrbench.defenses.test_time import Step, TestTime, TestTimeClassifier, bpda, exact_gradients
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.runner import run
from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins

cli = CliRunner()
TASKS = ("micro_color", "micro_position")
N = 32


class Noisy(Defense):
    name = "adaptive_noisy"
    description = "CLIP behind Gaussian input noise (a randomised test-time defense, for the tests)"
    test_time = TestTime(steps=(Step("gaussian noise", differentiable=True, random=True),), eot_draws=4)

    def defend(self, x, clf, generator):
        return clf(x + 0.02 * torch.randn(x.shape, generator=generator, device=x.device))


@pytest.fixture(scope="module", autouse=True)
def registered():
    load_builtins()
    DEFENSES.add(Noisy.name, Noisy, origin="tests")
    PROTOCOLS.add("adaptive_toy", replace(
        PROTOCOLS.get("micro"), name="adaptive_toy", version=1, datasets=TASKS, train_dataset=None, n_samples=N,
        batch_size=N, attack_defaults={"pgd": {"steps": 10, "step": 1.0}}, required_suites=("pgd",), subsets={},
        default_subset=None, train_on_demand=False), origin="tests")
    yield


def _cfg(tmp_path: Path, defense: str, name: str, **kw) -> RunConfig:
    kw.setdefault("attacks", ("pgd",))
    return RunConfig(defense=defense, protocol="adaptive_toy", device="cpu", jobs=1,
                     results_dir=str(tmp_path / name / "results"), leaderboard_dir=str(tmp_path / name / "lb"), **kw)


def _flags(results) -> dict[str, np.ndarray]:
    out = {}
    for r in results:
        with np.load(r.path.with_suffix(".flags.npz")) as z:
            out[r.record.protocol.dataset] = {k: z[k].copy() for k in z.files}
    return out


def _robust(results) -> float:
    return float(np.mean([r.record.metrics.robust_accuracy for r in results]))


def _clean(results) -> float:
    return float(np.mean([r.record.metrics.clean_accuracy for r in results]))


def test_bpda_is_the_step_forward_and_its_surrogate_backward():
    x = torch.rand(3, 3, 8, 8, requires_grad=True)
    out = bpda(lambda z: reduce_bit_depth(z, 3), x)
    assert torch.equal(out, reduce_bit_depth(x.detach(), 3))  # the forward pass is the step, bit for bit
    (g,) = torch.autograd.grad((out * 2).sum(), x)
    assert torch.equal(g, torch.full_like(x, 2.0))  # identity in the backward pass
    out = bpda(lambda z: reduce_bit_depth(z, 3), x, surrogate=lambda z: z ** 2)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(g, 2 * x.detach())  # a declared surrogate's gradient
    with exact_gradients():  # the naive attack's view: the rounding's own (zero) gradient
        (g,) = torch.autograd.grad(bpda(lambda z: reduce_bit_depth(z, 3), x).sum(), x)
    assert torch.count_nonzero(g) == 0


def test_eot_gradient_is_the_brute_force_average_of_the_draws():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 4)
    clf = torch.nn.Sequential(torch.nn.Flatten(), lin)
    model = TestTimeClassifier(clf, Noisy().defend, Noisy.test_time)
    x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 3, 0])

    def objective(logits, yy):
        return F.cross_entropy(logits, yy, reduction="none")

    model.reseed(7)
    _, g = eot_gradient(model, x.clone().requires_grad_(True), y, objective, 6)
    model.reseed(7)
    grads = []
    for _ in range(6):  # one draw at a time, by hand
        xi = x.clone().requires_grad_(True)
        (gi,) = torch.autograd.grad(objective(model(xi), y).sum(), xi)
        grads.append(gi)
    brute = torch.stack(grads).mean(0)
    assert torch.allclose(g, brute, atol=1e-7)
    assert not torch.allclose(grads[0], grads[1])  # the draws differ: EOT averages something


def test_purification_looks_robust_to_a_naive_attack_and_falls_to_bpda(tmp_path):
    """The textbook answer (Athalye et al. 2018): masked gradients; BPDA-PGD brings it to about CLIP's number."""
    clip = run(_cfg(tmp_path, "clip", "clip"), progress=False)
    adaptive = run(_cfg(tmp_path, "bitdepth", "adaptive"), progress=False)
    published = run(_cfg(tmp_path, "bitdepth", "published", attack_mode="non-adaptive"), progress=False)
    naive = _naive_robust(tmp_path)
    assert _clean(adaptive) == _clean(published) >= _clean(clip) - 0.15
    assert _robust(adaptive) <= _robust(clip) + 0.10  # BPDA: within a few points of the undefended model
    assert _robust(published) >= _robust(adaptive)  # attacking the bare model is never stronger here
    rec = adaptive[0].record.protocol
    assert rec.attack_mode["mode"] == "adaptive" and rec.variant is None
    pub = published[0].record.protocol
    assert pub.attack_mode["mode"] == "non-adaptive" and pub.variant == "non-adaptive"
    assert "as published" in pub.attack_mode["label"]
    assert naive >= _clean(adaptive) - 0.05  # the naive attack sees the rounding's zero gradient: looks robust


def _naive_robust(tmp_path: Path) -> float:
    """Robust accuracy of bitdepth under PGD through the rounding's own gradient (no BPDA), the same samples."""
    from zsrbench.data.base import select_indices
    from zsrbench.evaluation.config import make_plan
    from zsrbench.evaluation.jobs import build_evalset
    from zsrbench.evaluation.model import prepare_model
    from zsrbench.models.classifier import make_classifier

    plan = make_plan(_cfg(tmp_path, "bitdepth", "naive"))
    defense, parts, _ = prepare_model(plan.cfg, plan.protocol, device="cpu", seed=plan.seed)
    robust = []
    for name in TASKS:
        evalset = build_evalset(plan, name, parts.image_size, None)
        idx = select_indices(len(evalset), N, plan.seed)
        x = torch.stack([evalset.dataset[i][0] for i in idx]).float()
        y = torch.tensor([int(evalset.dataset[i][1]) for i in idx])
        clf = defense.wrap_classifier(make_classifier(parts, evalset.info.prompts(), device="cpu")[0])
        with torch.no_grad():
            correct = clf(x).argmax(1) == y
        with exact_gradients():
            out = pgd_attack(clf, x[correct], y[correct], eps=4 / 255, seed=0, step=1 / 255, steps=10)
        robust.append(float((~out.success).sum()) / N)
    return float(np.mean(robust))


def test_on_a_defense_that_declares_nothing_the_adaptive_suite_is_the_plain_one(tmp_path):
    plain = run(_cfg(tmp_path, "clip", "plain"), progress=False)
    lines: list[str] = []
    adaptive = run(_cfg(tmp_path, "clip", "adaptive", attack_mode="adaptive"), progress=False, log=lines.append)
    a, b = _flags(plain), _flags(adaptive)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert np.array_equal(a[name][key], b[name][key]), (name, key)
    assert any("declares no test-time steps" in line and "equals the plain one" in line for line in lines)
    assert all(r.record.protocol.attack_mode is None and r.record.protocol.variant is None for r in adaptive)


def test_a_randomised_defense_is_attacked_with_eot_by_default(tmp_path):
    res = run(_cfg(tmp_path, "adaptive_noisy", "noisy", datasets=("micro_position",)), progress=False)
    rec = res[0].record.protocol
    assert rec.attacks[0].params["eot"] == 4 and rec.variant is None  # the declared draws: the standard evaluation
    assert rec.attack_mode["test_time"]["randomised"] is True
    again = run(_cfg(tmp_path, "adaptive_noisy", "noisy2", datasets=("micro_position",)), progress=False)
    assert np.array_equal(_flags(res)["micro_position"]["robust"], _flags(again)["micro_position"]["robust"])
    other = run(_cfg(tmp_path, "adaptive_noisy", "noisy3", datasets=("micro_position",), attack_params={"eot": 2}),
                progress=False)
    assert other[0].record.protocol.variant == "pgd-eot2"  # fewer draws than declared: an experiment


@pytest.mark.parametrize("args, says", [
    (["--defense", "bitdepth", "--set", "bitdepth.bits=9"], "at most 8"),
    (["--defense", "bitdepth", "--set", "bitdepth.bits=three"], "whole number"),
    (["--defense", "bitdepth", "--set", "bitdepth.bits=0"], "≥ 1"),
    (["--defense", "ttc", "--set", "ttc.victim=nope"], "'nope' is not a registered defense"),
    (["--defense", "ttc", "--set", "ttc.victim=bitdepth"], "is itself a test-time defense"),
    (["--defense", "ttc", "--set", "ttc.tau_thr=-1"], "must not be negative"),
    (["--defense", "ttc", "--set", "ttc.precision=bf16"], "must be one of fp32, fp16"),
])
def test_bad_test_time_settings_are_one_paragraph_exit_2_nothing_written(tmp_path, args, says):
    r = cli.invoke(app, ["run", "--protocol", "adaptive_toy", "--attack", "pgd", *args, "--results-dir",
                         str(tmp_path / "res"), "--leaderboard-dir", str(tmp_path / "lb"), "--quiet", "--jobs", "1"])
    assert r.exit_code == 2, r.output
    assert says in r.output and "Traceback" not in r.output
    assert not (tmp_path / "res").exists() and not (tmp_path / "lb").exists()


def test_the_official_apgd_goes_through_bpda(tmp_path):
    """AutoAttack's rand version (APGD-CE + APGD-DLR with EOT) attacks the defended classifier with BPDA too."""
    res = run(_cfg(tmp_path, "bitdepth", "aa", attacks=("aa-rand",), datasets=("micro_position",),
                   attack_params={"aa-rand.n_iter": 5, "aa-rand.eot_iter": 1}), progress=False)
    m = res[0].record.metrics
    assert res[0].record.protocol.attack_mode["mode"] == "adaptive"
    assert m.robust_accuracy <= m.clean_accuracy - 0.25  # the rounding's zero gradient would have left it ~clean


def test_tables_show_the_non_adaptive_number_labelled_and_never_ranked(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    for extra in ([], ["--non-adaptive"]):
        r = cli.invoke(app, ["run", "--protocol", "adaptive_toy", "--defense", "bitdepth", "--attack", "pgd",
                             "--datasets", "micro_position", "--results-dir", str(res), "--leaderboard-dir", str(lb),
                             "--quiet", "--jobs", "1", *extra])
        assert r.exit_code == 0, r.output
    out = cli.invoke(app, ["table", "--leaderboard-dir", str(lb), "--json"])
    assert out.exit_code == 0, out.output
    groups = {g["variant"]: g for g in json.loads(out.stdout)["groups"] if g["kind"] == "suite"}
    assert set(groups) == {None, "non-adaptive"}
    assert "non-adaptive (as published)" in groups["non-adaptive"]["title"]
    [row] = groups["non-adaptive"]["rows"]
    assert not row["ranked"] and "non-adaptive (as published)" in row["status"]
    assert "non-adaptive" not in groups[None]["rows"][0]["status"]
    side = [line for line in groups[None]["footer"] if "non-adaptive (as published) vs" in line]
    assert len(side) == 1 and "adaptive: the published kind of number overstates by" in side[0]
    assert side[0] in groups["non-adaptive"]["footer"]  # the same comparison under both tables


def test_the_audit_of_a_test_time_defense_goes_through_bpda_and_reports_the_non_adaptive_gap(tmp_path):
    from zsrbench.audit.runner import AuditConfig, run_audit

    cfg = AuditConfig(run=RunConfig(defense="bitdepth", protocol="adaptive_toy", leaderboard_dir=None,
                                    datasets=("micro_position",), device="cpu"),
                      n_samples=16, square_queries=20, noise_draws=2)
    audit = run_audit(cfg).entry.audit
    checks = {c.name: c for c in audit.checks}
    assert checks["gradient_health"].verdict == "pass"  # BPDA: the rounding's zero gradient is not what is attacked
    gap = checks["non_adaptive"]
    assert gap.verdict == "pass" and "non-adaptive PGD (as published)" in gap.summary
    row = gap.per_dataset["micro_position"]
    assert row["n"] > 0 and row["non_adaptive_robust"] >= 0 and row["adaptive_robust"] >= 0
    clip = run_audit(AuditConfig(run=RunConfig(defense="clip", protocol="adaptive_toy", leaderboard_dir=None,
                                               datasets=("micro_position",), device="cpu"),
                                 n_samples=16, square_queries=20, noise_draws=2)).entry.audit
    assert "non_adaptive" not in {c.name for c in clip.checks}  # nothing declared: the audit as before
