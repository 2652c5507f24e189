"""Evaluation-validity checks: does a robustness number measure the model, or the attack's failure?

The checks follow the practice of Carlini et al., *On Evaluating Adversarial Robustness* (2019), Tramèr et al.,
*On Adaptive Attacks to Adversarial Example Defenses* (2020) and AutoAttack's own flags. Each one is measured on
a seeded subset of a protocol's test sets (``zsrbench.audit_runner`` loads the models and data) and judged by
the fixed rules below; nothing here changes a measurement.

==================  ===========================================================================================
check               measured on the clean-correct samples of each dataset; verdict from the pooled numbers
==================  ===========================================================================================
``gradient_health`` fraction whose input gradient of the CE loss is exactly zero or non-finite
                    (warn > 1 %, fail > 10 %): quantised inputs, saturated logits, non-differentiable layers
``randomness``      repeated forward passes of the same inputs agree; otherwise the model is *randomised*
                    (warn; its attacks must use EOT and the audit's own attacks switch EOT on)
``eps_behaviour``   PGD robust accuracy along an ε sweep never rises (by more than 2 points + 1 sample), and at
                    a large ε (64/255) falls to chance (+5 points + 1.96 binomial SE) or below
``convergence``     PGD with twice the steps, and PGD with restarts, lower robust accuracy by ≤ 3 points
                    (warn), ≤ 6 (else fail)
``fgsm_vs_pgd``     single-step FGSM does not beat iterative PGD: FGSM robust accuracy ≥ PGD's − 2 points
                    (else fail); samples FGSM breaks and PGD does not are listed (warn when > 1 %)
``black_box``       Square (gradient-free) and uniform noise at ε break ≤ 2 % of the samples PGD left robust
                    (warn ≤ 10 %, else fail); each such sample is listed
``transfer``        PGD on the protocol's undefended base model, transferred, breaks ≤ 3 % of the samples PGD
                    left robust (warn ≤ 10 %, else fail); each such sample is listed
``autoattack_flags`` AutoAttack's own warnings recorded in the model's leaderboard results at this ε (warn)
``nonfinite``       NaN/inf logits, clean or under any attack of the audit or the recorded results (fail)
==================  ===========================================================================================

For a randomised model the tolerances of the comparisons (ε, convergence, FGSM, black-box, transfer) are widened
by its own prediction noise (how often a prediction changes between repeated passes), and every comparison
allows one sample of slack, so that noise is not taken for a finding. The overall verdict is ``fail`` when a
check fails, else ``warn`` when one warns, else ``pass``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.leaderboard.schema import AuditCheck

VERDICTS = ("pass", "warn", "fail")

# Thresholds (fractions unless named otherwise); every audit records them.
THRESHOLDS: dict[str, float] = {
    "grad_zero_warn": 0.01, "grad_zero_fail": 0.10,
    "random_logit_tol": 1e-4,  # relative max |Δlogit| between passes counted as "agree"
    "eps_rise_tol": 0.02, "large_eps_margin": 0.05, "large_eps": 64.0,
    "convergence_warn": 0.03, "convergence_fail": 0.06,
    "fgsm_beats_pgd_fail": 0.02, "fgsm_only_warn": 0.01,
    "black_box_warn": 0.02, "black_box_fail": 0.10,
    "transfer_warn": 0.03, "transfer_fail": 0.10,
}

TITLES = {
    "gradient_health": "gradient health (zero or non-finite input gradients)",
    "randomness": "randomness (repeated forward passes agree)",
    "eps_behaviour": "ε behaviour (monotone; chance at large ε)",
    "convergence": "convergence (more steps, restarts)",
    "fgsm_vs_pgd": "single-step FGSM does not beat PGD",
    "black_box": "black-box consistency (Square, uniform noise)",
    "transfer": "transfer from the undefended base model",
    "autoattack_flags": "AutoAttack's own flags",
    "nonfinite": "non-finite outputs (NaN/inf logits)",
}


def worst(verdicts: Sequence[str]) -> str:
    """The worst of ``verdicts`` (``pass`` < ``warn`` < ``fail``); ``pass`` for none."""
    return max(verdicts, key=VERDICTS.index, default="pass")


def by_thresholds(value: float, warn: float, fail: float) -> str:
    return "fail" if value > fail else "warn" if value > warn else "pass"


# ------------------------------------------------------------------------------------------------ measurements
def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
            batch_size: int) -> torch.Tensor:
    """``fn`` over batches of (x, y), concatenated."""
    outs = [fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.bool)


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).float() for i in range(0, x.shape[0], batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, finite mask): a sample with a NaN/inf logit predicts class -1 (never correct)."""
    z = logits_of(model, x, batch_size)
    finite = torch.isfinite(z).all(1)
    pred = torch.where(finite, z.nan_to_num(0.0).argmax(1), torch.full_like(finite, -1, dtype=torch.long))
    return pred, finite


def gradient_status(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: (input gradient of the CE loss is exactly zero, it is non-finite)."""
    zero, bad = [], []
    for i in range(0, x.shape[0], batch_size):
        xi = x[i:i + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xi).float(), y[i:i + batch_size], reduction="sum")
            g = torch.autograd.grad(loss, xi, allow_unused=True)[0]
        if g is None:
            g = torch.zeros_like(xi)
        flat = g.detach().flatten(1)
        finite = torch.isfinite(flat).all(1)
        bad.append((~finite).cpu().numpy())
        zero.append((finite & (flat.abs().amax(1) == 0)).cpu().numpy())
    if not zero:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    return np.concatenate(zero), np.concatenate(bad)


def repeat_disagreement(model: nn.Module, x: torch.Tensor, batch_size: int, passes: int = 3) -> tuple[float, float]:
    """(max relative |Δlogit| between repeated passes, fraction of samples whose prediction changes)."""
    runs = [logits_of(model, x, batch_size) for _ in range(passes)]
    scale = max(float(runs[0].nan_to_num(0.0).abs().max()), 1e-12)
    diff = max(float((r - runs[0]).nan_to_num(0.0).abs().max()) for r in runs[1:]) / scale
    preds = torch.stack([r.nan_to_num(0.0).argmax(1) for r in runs])
    flips = float((preds != preds[0]).any(0).float().mean()) if x.shape[0] else 0.0
    return diff, flips


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """One signed-gradient step of size ε from the clean image (no random start): the weakest white-box attack."""
    xi = x.clone().requires_grad_(True)
    with torch.enable_grad():
        g = torch.autograd.grad(F.cross_entropy(model(xi).float(), y, reduction="sum"), xi)[0]
    return (x + eps * g.sign()).clamp(0.0, 1.0).detach()


def uniform_noise(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, queries: int, seed: int) -> torch.Tensor:
    """The official Square attack (``pyautoattack``), L∞, margin loss, ``queries`` queries, schedule rescaled."""
    from pyautoattack.square import SquareAttack

    from zsrbench.attacks.autoattack import attack_mode, preserved_rng

    if x.shape[0] == 0:
        return x
    attack = SquareAttack(model, norm="Linf", n_queries=int(queries), eps=eps, p_init=0.8, n_restarts=1, seed=seed,
                          verbose=False, resc_schedule=True, device=x.device)
    with attack_mode(model), preserved_rng(x.device):
        return attack.perturb(x.float().contiguous(), y).detach().to(x.dtype)


@dataclass
class Tally:
    """Counts pooled over datasets for one check, plus the per-dataset numbers."""

    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, dataset: str, /, **numbers: Any) -> None:
        self.per_dataset.setdefault(dataset, {}).update(numbers)
        for k, v in numbers.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "max_rel_logit_change":
                self.totals[k] = self.totals.get(k, 0.0) + float(v)

    def listed(self, dataset: str, indices: Sequence[int]) -> None:
        if len(indices):
            self.samples[dataset] = sorted(int(i) for i in indices)


def frac(a: float, b: float) -> float:
    return a / b if b else 0.0


# ------------------------------------------------------------------------------------------------ verdicts
def _check(name: str, verdict: str, summary: str, tally: Tally, keys: Sequence[str] = (),
           per_dataset_verdict: Callable[[dict[str, Any]], str] | None = None) -> AuditCheck:
    per = {}
    for ds, nums in tally.per_dataset.items():
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in nums.items()}
        if per_dataset_verdict is not None:
            row["verdict"] = per_dataset_verdict(nums)
        per[ds] = row
    th = {k: THRESHOLDS[k] for k in keys}
    return AuditCheck(name=name, title=TITLES[name], verdict=verdict, summary=summary, per_dataset=per,
                      samples=tally.samples, thresholds=th)


def judge_gradient(t: Tally) -> AuditCheck:
    n, zero, bad = t.totals.get("n_correct", 0), t.totals.get("zero", 0), t.totals.get("nonfinite", 0)

    def rule(d: dict[str, Any]) -> str:
        return by_thresholds(frac(d["zero"] + d["nonfinite"], d["n_correct"]), THRESHOLDS["grad_zero_warn"],
                             THRESHOLDS["grad_zero_fail"])

    f = frac(zero + bad, n)
    v = by_thresholds(f, THRESHOLDS["grad_zero_warn"], THRESHOLDS["grad_zero_fail"])
    return _check("gradient_health", v, f"{f:.1%} of {int(n)} clean-correct samples have a zero ({int(zero)}) or "
                  f"non-finite ({int(bad)}) input gradient", t, ("grad_zero_warn", "grad_zero_fail"), rule)


def prediction_noise(t: Tally) -> float:
    """How often a prediction changes between repeated passes (0 for a deterministic model): the larger of the
    pooled rates on the clean images and on the reference PGD's adversarial images."""
    return max(frac(t.totals.get("flipped", 0), t.totals.get("n", 0)),
               frac(t.totals.get("adv_flipped", 0), t.totals.get("n_attacked", 0)))


def judge_randomness(t: Tally) -> AuditCheck:
    diffs = [d["max_rel_logit_change"] for d in t.per_dataset.values()]
    flips = t.totals.get("flipped", 0)
    n = t.totals.get("n", 0)
    top = max(diffs, default=0.0)
    randomised = top > THRESHOLDS["random_logit_tol"]
    summary = (f"repeated forward passes differ (max relative logit change {top:.2e}; {int(flips)} of {int(n)} "
               "predictions change): a randomised defense, evaluate it with EOT (--eot N, aa-rand)"
               if randomised else f"repeated forward passes agree (max relative logit change {top:.1e})")
    return _check("randomness", "warn" if randomised else "pass", summary, t, ("random_logit_tol",),
                  lambda d: "warn" if d["max_rel_logit_change"] > THRESHOLDS["random_logit_tol"] else "pass")


def judge_eps(t: Tally, sweep: Sequence[float], chance: dict[str, float], noise: float = 0.0) -> AuditCheck:
    """Pooled robust accuracy per ε must not rise; at the largest ε every dataset falls to chance."""
    n = t.totals.get("n", 0)
    accs = [frac(t.totals.get(f"robust@{e:g}", 0), n) for e in sweep]
    rises = [(a, b, e0, e1) for (a, e0), (b, e1) in zip(zip(accs, sweep), zip(accs[1:], sweep[1:]))
             if b > a + THRESHOLDS["eps_rise_tol"] + frac(1, n) + noise]
    large = max(sweep)

    def above_chance(ds: str, d: dict[str, Any]) -> bool:
        c, m = chance[ds], max(d["n"], 1)
        return d[f"robust@{large:g}"] / m > c + THRESHOLDS["large_eps_margin"] + 1.96 * math.sqrt(c * (1 - c) / m)

    def rule_ds(d: dict[str, Any]) -> str:
        ds = d["dataset"]
        seq = [d[f"robust@{e:g}"] for e in sweep]
        rise = any(b > a + (THRESHOLDS["eps_rise_tol"] + noise) * d["n"] + 1 for a, b in zip(seq, seq[1:]))
        return "fail" if rise or above_chance(ds, d) else "pass"

    high = [ds for ds, d in t.per_dataset.items() if above_chance(ds, d)]
    curve = ", ".join(f"{e:g}/255: {a:.1%}" for e, a in zip(sweep, accs))
    parts = [f"PGD robust accuracy of the clean-correct samples {curve}"]
    if rises:
        parts.append("rises with ε (" + "; ".join(f"{e0:g}→{e1:g}: {a:.1%}→{b:.1%}" for a, b, e0, e1 in rises) + ")")
    if high:
        parts.append(f"above chance at {large:g}/255 on {', '.join(high)}")
    return _check("eps_behaviour", "fail" if rises or high else "pass", "; ".join(parts), t,
                  ("eps_rise_tol", "large_eps_margin", "large_eps"), rule_ds)


def judge_convergence(t: Tally, noise: float = 0.0) -> AuditCheck:
    """``noise``: the fraction of predictions that change between repeated passes (randomised models); the
    thresholds are widened by it and by one sample, so that the model's own randomness is not taken for an
    attack that has not converged."""
    n = t.totals.get("n", 0)
    base = frac(t.totals.get("robust", 0), n)
    more = frac(t.totals.get("robust_2x_steps", 0), n)
    rest = frac(t.totals.get("robust_restarts", 0), n)
    drop = max(base - more, base - rest)

    def rule(d: dict[str, Any]) -> str:
        m = max(d["n"], 1)
        dd = max(d["robust"] - d["robust_2x_steps"], d["robust"] - d["robust_restarts"]) / m - 1 / m - noise
        return by_thresholds(dd, THRESHOLDS["convergence_warn"], THRESHOLDS["convergence_fail"])

    v = by_thresholds(drop - frac(1, n) - noise, THRESHOLDS["convergence_warn"], THRESHOLDS["convergence_fail"])
    return _check("convergence", v, f"PGD {base:.1%}; twice the steps {more:.1%}; with restarts {rest:.1%} "
                  f"(largest drop {100 * drop:.2f} points)", t, ("convergence_warn", "convergence_fail"), rule)


def judge_fgsm(t: Tally, noise: float = 0.0) -> AuditCheck:
    n = t.totals.get("n", 0)
    pgd, fg, only = (frac(t.totals.get(k, 0), n) for k in ("robust", "robust_fgsm", "fgsm_only"))
    slack = frac(1, n) + noise
    beats = fg < pgd - THRESHOLDS["fgsm_beats_pgd_fail"] - slack
    v = "fail" if beats else "warn" if only - slack > THRESHOLDS["fgsm_only_warn"] else "pass"
    return _check("fgsm_vs_pgd", v, f"FGSM robust {fg:.1%} vs PGD {pgd:.1%}; {int(t.totals.get('fgsm_only', 0))} "
                  "sample(s) broken by FGSM but not by PGD", t, ("fgsm_beats_pgd_fail", "fgsm_only_warn"))


def _consistency(name: str, t: Tally, warn_key: str, fail_key: str, what: str, noise: float = 0.0) -> AuditCheck:
    base = t.totals.get("pgd_robust", 0)
    broken = t.totals.get("broken_beyond_pgd", 0)
    f = frac(broken, base)

    def rule(d: dict[str, Any]) -> str:
        g = frac(d["broken_beyond_pgd"], d["pgd_robust"]) - noise
        return by_thresholds(g, THRESHOLDS[warn_key], THRESHOLDS[fail_key])

    v = by_thresholds(f - noise, THRESHOLDS[warn_key], THRESHOLDS[fail_key])
    listed = "; they are listed" if broken else ""
    return _check(name, v, f"{what} broke {int(broken)} of the {int(base)} samples PGD left robust ({f:.1%})"
                  f"{listed}", t, (warn_key, fail_key), rule)


def judge_black_box(t: Tally, queries: int, draws: int, noise: float = 0.0) -> AuditCheck:
    return _consistency("black_box", t, "black_box_warn", "black_box_fail",
                        f"Square ({queries} queries) or uniform noise ({draws} draws)", noise)


def judge_transfer(t: Tally, base: str, noise: float = 0.0) -> AuditCheck:
    return _consistency("transfer", t, "transfer_warn", "transfer_fail", f"PGD transferred from {base}", noise)


def judge_autoattack_flags(found: dict[str, list[str]]) -> AuditCheck:
    t = Tally()
    for where, items in found.items():
        t.per_dataset[where] = {"warnings": len(items), "items": items[:20]}
    total = sum(len(v) for v in found.values())
    summary = (f"{total} AutoAttack warning(s) in the recorded results: "
               + "; ".join(sorted({i for v in found.values() for i in v})[:5]) if total
               else "no AutoAttack warnings in the recorded results" if found else
               "no AutoAttack results recorded for this model at this ε")
    return _check("autoattack_flags", "warn" if total else "pass", summary, t)


def judge_nonfinite(t: Tally, recorded: int) -> AuditCheck:
    n = int(t.totals.get("nonfinite", 0))
    v = "fail" if n or recorded else "pass"
    summary = (f"{n} sample(s) with NaN/inf logits in the audit's passes, {recorded} in the recorded results"
               if v == "fail" else "all logits finite")
    return _check("nonfinite", v, summary, t)


def summarise(checks: Sequence[AuditCheck]) -> tuple[str, list[str], list[str]]:
    """(overall verdict, failed check names, warned check names)."""
    failed = [c.name for c in checks if c.verdict == "fail"]
    warned = [c.name for c in checks if c.verdict == "warn"]
    return worst([c.verdict for c in checks]), failed, warned
