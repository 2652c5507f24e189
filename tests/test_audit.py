"""`zsrbench audit` on known-broken defenses: each is flagged by the specific check it fails.

The broken defenses are plugins registered by this module (as a user's package would register them): CLIP
behind 4-bit input quantisation (zero input gradient almost everywhere), CLIP with saturated logits (its
cross-entropy gradient underflows to exactly zero while the predictions are unchanged) and CLIP with Gaussian
input noise at every forward pass (randomised). They run on a small protocol made of three micro tasks so
that the module stays fast; the undefended micro CLIP is the control (no false alarm).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from linear_model import Around
from zsrbench.audit.runner import AuditConfig, run_audit
from zsrbench.cli import app
from zsrbench.defenses.base import Defense
from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
from zsrbench.evaluation.config import RunConfig

cli = CliRunner()
TASKS = ("micro_color", "micro_size", "micro_count")
QUERIES = 200  # Square queries in these tests (the CLI default is 1000)
N = 32  # samples per task


class Quantised(Defense):
    name = "test_quantised"
    description = "CLIP behind 4-bit colour quantisation (gradient masking)"

    def wrap_classifier(self, clf):
        return Around(clf, lambda m, x: m(torch.round(x * 15) / 15))


class Saturated(Defense):
    name = "test_saturated"
    description = "CLIP with logits scaled by 1e4 (the CE gradient underflows)"

    def wrap_classifier(self, clf):
        return Around(clf, lambda m, x: m(x) * 1e4)


class NaNLogits(Defense):
    name = "test_nan"
    description = "CLIP whose logits are NaN (as a checkpoint of NaN weights gives)"

    def wrap_classifier(self, clf):
        return Around(clf, lambda m, x: m(x) * float("nan"))


class Randomised(Defense):
    name = "test_randomised"
    description = "CLIP with Gaussian input noise (σ = 8/255) drawn at every forward pass"

    def wrap_classifier(self, clf):
        return Around(clf, lambda m, x: m((x + torch.randn_like(x) * (8 / 255)).clamp(0, 1)))


@pytest.fixture(scope="module", autouse=True)
def registered():
    load_builtins()
    for cls in (Quantised, Saturated, NaNLogits, Randomised):
        DEFENSES.add(cls.name, cls, origin="tests")
    micro = PROTOCOLS.get("micro")
    PROTOCOLS.add("audit_toy", replace(
        micro, name="audit_toy", version=1, datasets=TASKS, train_dataset=None, n_samples=N, batch_size=N,
        attack_defaults={"pgd": {"steps": 8, "step": 1.0}, "cw": {"steps": 8, "step": 1.0, "kappa": 50.0},
                         "aa-rand": {"n_iter": 10, "eot_iter": 4}},  # this toy protocol's standard EOT suite
        required_suites=("pgd",), subsets={}, default_subset=None, train_on_demand=False), origin="tests")
    yield


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    return tmp_path_factory.mktemp("audit-lb") / "leaderboards"


def audit(defense: str, lb, **kw):
    cfg = AuditConfig(run=RunConfig(defense=defense, protocol="audit_toy", leaderboard_dir=str(lb)),
                      n_samples=N, square_queries=QUERIES, **kw)
    return run_audit(cfg).entry.audit


def checks(a):
    return {c.name: c for c in a.checks}


def test_undefended_clip_passes(lb):
    a = audit("clip", lb)
    assert a.verdict != "fail", [(c.name, c.summary) for c in a.checks if c.verdict == "fail"]
    assert not a.randomised
    assert checks(a)["gradient_health"].verdict == "pass"


def test_input_quantisation_fails_gradient_health(lb):
    a = audit("test_quantised", lb)
    assert a.verdict == "fail"
    c = checks(a)
    assert c["gradient_health"].verdict == "fail"
    assert "gradient_health" in a.failed
    # the black-box attacks break what PGD could not move, and the samples are listed
    assert c["black_box"].verdict != "pass" or c["transfer"].verdict != "pass" or c["eps_behaviour"].verdict == "fail"


def test_saturated_logits_fail_gradient_health(lb):
    a = audit("test_saturated", lb)
    c = checks(a)
    assert c["gradient_health"].verdict == "fail"
    assert a.verdict == "fail"


def test_nan_logits_fail_the_nonfinite_check(lb):
    a = audit("test_nan", lb)
    c = checks(a)
    assert c["nonfinite"].verdict == "fail" and "nonfinite" in a.failed
    assert a.datasets["micro_color"]["n_correct"] == 0  # NaN logits are never correct


def test_randomised_defense_is_flagged_and_attacked_with_eot(lb):
    a = audit("test_randomised", lb, eot=2)
    assert a.randomised
    assert checks(a)["randomness"].verdict == "warn"
    assert a.settings["eot"] == 2


def _table(lb) -> str:
    r = cli.invoke(app, ["table", "--protocol", "audit_toy", "--leaderboard-dir", str(lb), "--markdown"])
    assert r.exit_code == 0, r.output
    return r.stdout


def _ranking_rows(md: str) -> list[str]:
    """The rows of the first (ranking) table of the markdown, in order."""
    block = md.split("**Robust accuracy (%)**", 1)[1].split("\n\n", 2)[1]
    return [line for line in block.splitlines() if line.startswith("|") and "---" not in line][1:]


def test_broken_defenses_are_never_ranked_above_a_real_one(lb):
    """After the audits above: PGD entries for all; the masked ones rank below CLIP with "unreliable"."""
    for defense in ("clip", "test_quantised", "test_saturated", "test_randomised"):
        r = cli.invoke(app, ["run", "--protocol", "audit_toy", "--defense", defense, "--attack", "pgd",
                             "--leaderboard-dir", str(lb), "--results-dir", str(lb.parent / "results"), "--quiet"])
        assert r.exit_code == 0, r.output
    rows = _ranking_rows(_table(lb))
    order = [next(d for d in ("clip", "test_quantised", "test_saturated", "test_randomised") if f" {d}/" in row)
             for row in rows]
    assert order[0] == "clip", rows
    for row in rows:
        if " test_quantised/" in row or " test_saturated/" in row:
            assert "unreliable" in row and "gradient_health" in row, row
        if " test_randomised/" in row:
            assert "without EOT" in row, row
    # PGD with EOT (--eot 2) is an experiment, its own entry: it never makes the standard evaluation rankable
    r = cli.invoke(app, ["run", "--protocol", "audit_toy", "--defense", "test_randomised", "--attack", "pgd",
                         "--eot", "2", "--leaderboard-dir", str(lb), "--results-dir", str(lb.parent / "results"),
                         "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _ranking_rows(_table(lb))
    assert next(row for row in rows if " test_randomised/" in row).startswith("| – |"), rows
    assert any(p.name.endswith("__variant-pgd-eot2") for p in (lb / "audit_toy").iterdir())
    # with the protocol's EOT suite (the official AutoAttack rand version) the randomised defense is ranked
    r = cli.invoke(app, ["run", "--protocol", "audit_toy", "--defense", "test_randomised", "--attack", "aa-rand",
                         "--leaderboard-dir", str(lb), "--results-dir", str(lb.parent / "results"), "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _ranking_rows(_table(lb))
    rnd = next(row for row in rows if " test_randomised/" in row)
    assert not rnd.startswith("| –") and "without EOT" not in rnd, rows
    masked = [i for i, row in enumerate(rows) if " test_quantised/" in row or " test_saturated/" in row]
    ranked = [i for i, row in enumerate(rows) if not row.startswith("| –")]
    assert min(masked) > max(ranked), rows


def test_audit_cli_exit_codes_and_storage(tmp_path):
    lb = tmp_path / "lb"
    base = ["audit", "--protocol", "audit_toy", "--n-samples", "12", "--square-queries", "50",
            "--datasets", "micro_color,micro_size",
            "--leaderboard-dir", str(lb), "--quiet"]
    ok = cli.invoke(app, [*base, "--defense", "clip"])
    assert ok.exit_code == 0, ok.output
    bad = cli.invoke(app, [*base, "--defense", "test_quantised"])
    assert bad.exit_code == 1, bad.output
    assert "gradient" in bad.output
    entries = sorted(p.name for p in (lb / "audit_toy").iterdir())
    assert any(e.startswith("test_quantised__") and "__audit__" in e for e in entries)
    again = cli.invoke(app, [*base, "--defense", "clip"])
    assert again.exit_code == 0 and "reproduced r0001" in again.output
    entry_dir = next(p for p in (lb / "audit_toy").iterdir() if p.name.startswith("clip__"))
    assert sorted(q.name for q in entry_dir.iterdir()) == ["r0001.json"]  # no second revision
    data = json.loads((entry_dir / "r0001.json").read_text())
    assert data["kind"] == "audit" and data["audit"]["verdict"] in ("pass", "warn")
    assert cli.invoke(app, ["validate", str(lb)]).exit_code == 0


def test_audit_bad_input_exits_2_and_writes_nothing(tmp_path):
    lb = tmp_path / "lb"
    for args, needle in (
        (["--protocol", "synthetic"], "base model"),
        (["--protocol", "audit_toy", "--n-samples", "0"], "--n-samples"),
        (["--protocol", "audit_toy", "--defense", "nope"], "Unknown defense"),
        (["--entry", "no-such-entry"], "No leaderboard"),
    ):
        r = cli.invoke(app, ["audit", *args, "--leaderboard-dir", str(lb)])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert not lb.exists()
