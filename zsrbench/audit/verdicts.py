"""The audit's verdicts: fixed rules over the numbers :mod:`zsrbench.audit` measures, per dataset.

Every check is judged **per dataset**: each dataset gets ``pass``, ``warn``, ``fail``, or ``n/a`` when the check
had nothing to look at there (no clean-correct sample, no sample PGD left robust, no AutoAttack result recorded).
A check's verdict is the worst of its datasets' verdicts, a dataset's verdict the worst of the checks' verdicts
on it, and the audit's verdict the worst of all (``n/a`` only when nothing was checked at all). A model's
ranking rests on the datasets it is ranked on (:mod:`zsrbench.leaderboard.ranking`), so a check that fails on
one dataset is never diluted by the others.

Every comparison allows one sample of slack, and for a randomised model the tolerances are widened by its own
prediction noise (how often a prediction changes between repeated passes), so that noise is not taken for a
finding. The pooled numbers over the audited datasets make each check's one-line summary.

A re-audit of some datasets keeps the evidence of the others: the rows of the datasets it did not audit come
from the previous revision with their verdicts (:meth:`Tally.carry`), so a narrower audit never replaces the
evidence of a wider one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from zsrbench.leaderboard.schema import NA, AuditCheck, worst


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
    "non_adaptive": "test-time defense: the non-adaptive number (as published) beside the adaptive one",
}


def by_thresholds(value: float, warn: float, fail: float) -> str:
    return "fail" if value > fail else "warn" if value > warn else "pass"


def frac(a: float, b: float) -> float:
    return a / b if b else 0.0


@dataclass
class Tally:
    """One check's numbers per dataset (rows), pooled over the datasets (totals), and the samples it lists.

    Rows measured now are judged by the check's rule; rows carried over from an earlier audit keep the verdict
    they were given then.
    """

    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, dataset: str, /, **numbers: Any) -> None:
        self.per_dataset.setdefault(dataset, {}).update(numbers)
        for k, v in numbers.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_POOLED:
                self.totals[k] = self.totals.get(k, 0.0) + float(v)

    def listed(self, dataset: str, indices: Sequence[int]) -> None:
        if len(indices):
            self.samples[dataset] = sorted(int(i) for i in indices)

    def carry(self, dataset: str, row: dict[str, Any], samples: Sequence[int] = ()) -> None:
        """A dataset's row from an earlier audit (numbers and its verdict then), and the samples it listed."""
        self.add(dataset, **{k: v for k, v in row.items() if k != "verdict"})
        self.per_dataset[dataset]["verdict"] = row.get("verdict", NA)
        self.listed(dataset, samples)


NOT_POOLED = ("max_rel_logit_change", "chance")


def _check(name: str, summary: str, tally: Tally, keys: Sequence[str],
           rule: Callable[[str, dict[str, Any]], str]) -> AuditCheck:
    """The check: each row judged by ``rule(dataset, row)`` unless it carries its verdict; the check's verdict is
    the worst of the rows'."""
    per = {}
    for ds, nums in tally.per_dataset.items():
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in nums.items()}
        row["verdict"] = nums["verdict"] if "verdict" in nums else rule(ds, nums)
        per[ds] = row
    th = {k: THRESHOLDS[k] for k in keys}
    return AuditCheck(name=name, title=TITLES[name], verdict=worst([r["verdict"] for r in per.values()]),
                      summary=summary, per_dataset=per, samples=tally.samples, thresholds=th)


# ------------------------------------------------------------------------------------------------ the checks
def judge_gradient(t: Tally) -> AuditCheck:
    n, zero, bad = t.totals.get("n_correct", 0), t.totals.get("zero", 0), t.totals.get("nonfinite", 0)

    def rule(_: str, d: dict[str, Any]) -> str:
        if not d["n_correct"]:
            return NA
        return by_thresholds(frac(max(d["zero"] + d["nonfinite"] - 1, 0), d["n_correct"]),
                             THRESHOLDS["grad_zero_warn"], THRESHOLDS["grad_zero_fail"])

    f = frac(zero + bad, n)
    return _check("gradient_health", f"{f:.1%} of {int(n)} clean-correct samples have a zero ({int(zero)}) or "
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

    def rule(_: str, d: dict[str, Any]) -> str:
        if not d["n"]:
            return NA
        return "warn" if d["max_rel_logit_change"] > THRESHOLDS["random_logit_tol"] else "pass"

    return _check("randomness", summary, t, ("random_logit_tol",), rule)


def is_randomised(check: AuditCheck) -> bool:
    """Whether the randomness check found a dataset on which repeated passes differ."""
    return any(r.get("max_rel_logit_change", 0) > THRESHOLDS["random_logit_tol"] for r in check.per_dataset.values())


def judge_eps(t: Tally, sweep: Sequence[float], chance: dict[str, float], noise: float = 0.0) -> AuditCheck:
    """Robust accuracy per ε must not rise; at the largest ε every dataset falls to chance (``chance``: per
    dataset, also stored in its row)."""
    n = t.totals.get("n", 0)
    accs = [frac(t.totals.get(f"robust@{e:g}", 0), n) for e in sweep]
    rises = [(a, b, e0, e1) for (a, e0), (b, e1) in zip(zip(accs, sweep), zip(accs[1:], sweep[1:]))
             if b > a + THRESHOLDS["eps_rise_tol"] + frac(1, n) + noise]
    large = max(sweep)

    def above_chance(ds: str, d: dict[str, Any]) -> bool:
        c, m = chance.get(ds, d.get("chance")), max(d["n"], 1)
        if c is None or f"robust@{large:g}" not in d:
            return False
        return d[f"robust@{large:g}"] / m > c + THRESHOLDS["large_eps_margin"] + 1.96 * math.sqrt(c * (1 - c) / m)

    def rule(ds: str, d: dict[str, Any]) -> str:
        if not d["n"]:
            return NA
        seq = [d[f"robust@{e:g}"] for e in sweep]
        rise = any(b > a + (THRESHOLDS["eps_rise_tol"] + noise) * d["n"] + 1 for a, b in zip(seq, seq[1:]))
        return "fail" if rise or above_chance(ds, d) else "pass"

    high = [ds for ds, d in t.per_dataset.items() if d["n"] and above_chance(ds, d)]
    curve = ", ".join(f"{e:g}/255: {a:.1%}" for e, a in zip(sweep, accs))
    parts = [f"PGD robust accuracy of the clean-correct samples {curve}"]
    if rises:
        parts.append("rises with ε (" + "; ".join(f"{e0:g}→{e1:g}: {a:.1%}→{b:.1%}" for a, b, e0, e1 in rises) + ")")
    if high:
        parts.append(f"above chance at {large:g}/255 on {', '.join(high)}")
    return _check("eps_behaviour", "; ".join(parts), t, ("eps_rise_tol", "large_eps_margin", "large_eps"), rule)


def judge_convergence(t: Tally, noise: float = 0.0) -> AuditCheck:
    """``noise``: the fraction of predictions that change between repeated passes (randomised models); the
    thresholds are widened by it and by one sample, so that the model's own randomness is not taken for an
    attack that has not converged."""
    n = t.totals.get("n", 0)
    base = frac(t.totals.get("robust", 0), n)
    more = frac(t.totals.get("robust_2x_steps", 0), n)
    rest = frac(t.totals.get("robust_restarts", 0), n)
    drop = max(base - more, base - rest)

    def rule(_: str, d: dict[str, Any]) -> str:
        if not d["n"]:
            return NA
        m = d["n"]
        dd = max(d["robust"] - d["robust_2x_steps"], d["robust"] - d["robust_restarts"]) / m - 1 / m - noise
        return by_thresholds(dd, THRESHOLDS["convergence_warn"], THRESHOLDS["convergence_fail"])

    return _check("convergence", f"PGD {base:.1%}; twice the steps {more:.1%}; with restarts {rest:.1%} "
                  f"(largest drop {100 * drop:.2f} points)", t, ("convergence_warn", "convergence_fail"), rule)


def judge_fgsm(t: Tally, noise: float = 0.0) -> AuditCheck:
    n = t.totals.get("n", 0)
    pgd, fg = (frac(t.totals.get(k, 0), n) for k in ("robust", "robust_fgsm"))

    def rule(_: str, d: dict[str, Any]) -> str:
        if not d["n"]:
            return NA
        m = d["n"]
        slack = 1 / m + noise
        if d["robust_fgsm"] / m < d["robust"] / m - THRESHOLDS["fgsm_beats_pgd_fail"] - slack:
            return "fail"
        return "warn" if d["fgsm_only"] / m - slack > THRESHOLDS["fgsm_only_warn"] else "pass"

    return _check("fgsm_vs_pgd", f"FGSM robust {fg:.1%} vs PGD {pgd:.1%}; {int(t.totals.get('fgsm_only', 0))} "
                  "sample(s) broken by FGSM but not by PGD", t, ("fgsm_beats_pgd_fail", "fgsm_only_warn"), rule)


def _consistency(name: str, t: Tally, warn_key: str, fail_key: str, what: str, noise: float = 0.0) -> AuditCheck:
    base = t.totals.get("pgd_robust", 0)
    broken = t.totals.get("broken_beyond_pgd", 0)
    f = frac(broken, base)

    def rule(_: str, d: dict[str, Any]) -> str:
        if not d["pgd_robust"]:
            return NA
        g = frac(max(d["broken_beyond_pgd"] - 1, 0), d["pgd_robust"]) - noise
        return by_thresholds(g, THRESHOLDS[warn_key], THRESHOLDS[fail_key])

    listed = "; they are listed" if broken else ""
    return _check(name, f"{what} broke {int(broken)} of the {int(base)} samples PGD left robust ({f:.1%})"
                  f"{listed}", t, (warn_key, fail_key), rule)


def judge_black_box(t: Tally, queries: int, draws: int, noise: float = 0.0) -> AuditCheck:
    return _consistency("black_box", t, "black_box_warn", "black_box_fail",
                        f"Square ({queries} queries) or uniform noise ({draws} draws)", noise)


def judge_transfer(t: Tally, base: str, noise: float = 0.0) -> AuditCheck:
    return _consistency("transfer", t, "transfer_warn", "transfer_fail", f"PGD transferred from {base}", noise)


def judge_autoattack_flags(t: Tally) -> AuditCheck:
    """Rows per dataset: ``suites`` (recorded AutoAttack suites; 0: none recorded, n/a), ``warnings``, ``items``."""
    total = int(t.totals.get("warnings", 0))
    items = sorted({i for d in t.per_dataset.values() for i in d.get("items", [])})
    recorded = any(d.get("suites") for d in t.per_dataset.values())
    summary = (f"{total} AutoAttack warning(s) in the recorded results: " + "; ".join(items[:5]) if total
               else "no AutoAttack warnings in the recorded results" if recorded else
               "no AutoAttack results recorded for this model at this ε: nothing to check (n/a)")

    def rule(_: str, d: dict[str, Any]) -> str:
        return NA if not d.get("suites") else "warn" if d.get("warnings") else "pass"

    return _check("autoattack_flags", summary, t, (), rule)


def judge_nonfinite(t: Tally) -> AuditCheck:
    """Rows per dataset: ``n`` audited samples, ``nonfinite`` in the audit's passes, ``recorded`` in the results."""
    n, rec = int(t.totals.get("nonfinite", 0)), int(t.totals.get("recorded", 0))
    summary = (f"{n} sample(s) with NaN/inf logits in the audit's passes, {rec} in the recorded results"
               if n or rec else "all logits finite")

    def rule(_: str, d: dict[str, Any]) -> str:
        return "fail" if d.get("nonfinite") or d.get("recorded") else "pass"

    return _check("nonfinite", summary, t, (), rule)


def summarise(checks: Sequence[AuditCheck]) -> tuple[str, list[str], list[str]]:
    """(overall verdict, failed check names, warned check names)."""
    failed = [c.name for c in checks if c.verdict == "fail"]
    warned = [c.name for c in checks if c.verdict == "warn"]
    return worst([c.verdict for c in checks]), failed, warned


def judge_non_adaptive(t: Tally) -> AuditCheck:
    """A test-time defense only. Rows per dataset: ``n`` attacked, ``adaptive_robust`` (PGD through the defended
    classifier, BPDA/EOT) and ``non_adaptive_robust`` (PGD on the bare classifier, the defended one judging, as the
    test-time papers report). Informational (pass): how far the published kind of number overstates."""
    n = int(t.totals.get("n", 0))
    a, na = int(t.totals.get("adaptive_robust", 0)), int(t.totals.get("non_adaptive_robust", 0))
    summary = (f"non-adaptive PGD (as published) leaves {100 * frac(na, n):.1f}% robust where adaptive PGD leaves "
               f"{100 * frac(a, n):.1f}%: the non-adaptive number overstates by {100 * frac(na - a, n):+.1f} points "
               "of the attacked samples")

    def rule(_: str, d: dict[str, Any]) -> str:
        return "pass" if d.get("n") else NA

    return _check("non_adaptive", summary, t, (), rule)

