"""Intervals and paired tests for accuracies, from per-sample flags (pure functions on numpy arrays).

Every function is deterministic: the random parts take a ``seed`` (default :data:`SEED`) and build their own
``numpy.random.Generator``, so the same inputs always give the same numbers.

* :func:`wilson` — the Wilson score interval of k correct out of n (``scipy.stats.binomtest``).
* :func:`bootstrap_average` — a stratified bootstrap over samples of the average of per-dataset accuracies
  (plain, or normalised ``(acc - chance) / (1 - chance)``): each replicate resamples every dataset's samples
  with replacement, independently per dataset; the interval is the percentile interval of the replicates.
* :func:`paired_dataset` — two models on the *same* samples of one dataset: the difference of accuracies,
  a paired bootstrap interval of it (both models' flags resampled with the same indices) and the exact
  McNemar test (two-sided binomial test of the discordant pairs, ``scipy.stats.binomtest(b, b + c, 0.5)``).
* :func:`paired_average` — the same for the (plain or normalised) average over datasets: a paired,
  stratified bootstrap interval of the difference and the two-sided p-value of a paired permutation
  (sign-flip) test stratified by dataset: under the null hypothesis that the two models are exchangeable,
  each sample's pair of outcomes is swapped with probability ½, independently; the statistic is the
  difference of averages itself. Only discordant samples change under a swap, so the null distribution is
  a weighted sum of centred binomials. When all datasets weigh the same per sample (one dataset, or a plain
  average of equally sized datasets) the test is exactly the two-sided McNemar test of the pooled discordant
  counts (``scipy.stats.binomtest``); otherwise p is estimated from :data:`N_PERMUTATIONS` seeded random sign
  flips (``tests/test_stats.py`` checks it against ``scipy.stats.permutation_test``).

Accuracy flags are 0/1, so a bootstrap replicate depends only on how many resampled samples fall in each
outcome cell (correct / wrong for one model; both, A only, B only, neither for a pair). Resampling n
samples with replacement makes those counts multinomial with the observed proportions, so the replicates are
drawn as multinomial counts: the same distribution as resampling indices, at a cost independent of n
(``tests/test_stats.py`` checks it against ``scipy.stats.bootstrap`` on index resampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95
N_BOOTSTRAP = 2000
N_PERMUTATIONS = 9999
SEED = 20240917
ALPHA = 0.05  # significance level of the paired tests (two-sided)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval (fractions, e.g. accuracies in [0, 1])."""

    estimate: float
    lo: float
    hi: float
    confidence: float = CONFIDENCE
    method: str = ""

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0


@dataclass(frozen=True)
class PairedDifference:
    """Model A vs model B on the same samples: ``difference = a - b`` with its interval and p-value."""

    a: float
    b: float
    difference: float
    lo: float  # paired bootstrap percentile interval of the difference
    hi: float
    p: float  # two-sided; see ``test``
    test: str
    a_only: int  # samples A gets right and B gets wrong (summed over datasets)
    b_only: int  # samples B gets right and A gets wrong
    n: int  # samples (summed over datasets)
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        return self.p < 1.0 - self.confidence


# ---------------------------------------------------------------------------------------------------- helpers
def as_flags(x: Any, name: str = "flags") -> np.ndarray:
    """A 1-D boolean array (0/1 numbers are accepted)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-sample flags, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name}: per-sample flags must be 0/1 or boolean")
        a = a.astype(bool)
    return a


def normalise(acc: float, chance: float) -> float:
    """``(acc - chance) / (1 - chance)``: 0 at chance level, 1 when every sample is right."""
    return (acc - chance) / (1.0 - chance) if chance < 1.0 else 0.0


def _weights(n_datasets: int, chances: Sequence[float] | None) -> tuple[np.ndarray, float]:
    """``average = Σ_d w_d · acc_d - offset`` (plain: w = 1/D; normalised: w = 1/(D (1 - c_d)))."""
    if n_datasets == 0:
        raise ValueError("an average needs at least one dataset")
    if chances is None:
        return np.full(n_datasets, 1.0 / n_datasets), 0.0
    c = np.asarray(chances, dtype=float)
    if c.shape != (n_datasets,):
        raise ValueError(f"{n_datasets} datasets but {c.size} chance levels")
    one = np.where(c < 1.0, 1.0 - c, np.inf)
    w = 1.0 / (n_datasets * one)
    return w, float(np.sum(w * c))


def average(accuracies: Sequence[float], chances: Sequence[float] | None = None) -> float:
    """Mean of per-dataset accuracies, normalised by each dataset's chance level when ``chances`` is given."""
    w, offset = _weights(len(accuracies), chances)
    return float(np.sum(w * np.asarray(accuracies, dtype=float)) - offset)


def _percentile(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.quantile(reps, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------------- one model
def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of the proportion ``k / n``."""
    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0; got k={k}, n={n}")
    ci = _st.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(k / n, float(ci.low), float(ci.high), confidence, "wilson")


def wilson_flags(flags: Any, confidence: float = CONFIDENCE) -> Interval:
    f = as_flags(flags)
    return wilson(int(f.sum()), f.size, confidence)


def bootstrap_average_counts(ks: Sequence[int], ns: Sequence[int], chances: Sequence[float] | None = None, *,
                             n_boot: int = N_BOOTSTRAP, seed: int = SEED,
                             confidence: float = CONFIDENCE) -> Interval:
    """Stratified bootstrap interval of the average accuracy, dataset d having ``ks[d]`` of ``ns[d]`` right.

    Binary flags are summarised exactly by their counts: resampling dataset d's samples gives
    Binomial(n_d, k_d / n_d) correct ones (see the module docstring).
    """
    ks_, ns_ = [int(k) for k in ks], [int(n) for n in ns]
    if len(ks_) != len(ns_):
        raise ValueError("ks and ns differ in length")
    if any(n <= 0 or not 0 <= k <= n for k, n in zip(ks_, ns_)):
        raise ValueError("every dataset needs n > 0 and 0 <= k <= n")
    w, offset = _weights(len(ks_), chances)
    rng = np.random.default_rng(seed)
    reps = np.zeros(n_boot)
    for wd, k, n in zip(w, ks_, ns_):
        reps += wd * rng.binomial(n, k / n, size=n_boot) / n
    reps -= offset
    est = average([k / n for k, n in zip(ks_, ns_)], chances)
    lo, hi = _percentile(reps, confidence)
    return Interval(est, lo, hi, confidence, f"stratified bootstrap ({n_boot} resamples, percentile)")


def bootstrap_average(flags: Sequence[Any], chances: Sequence[float] | None = None, *, n_boot: int = N_BOOTSTRAP,
                      seed: int = SEED, confidence: float = CONFIDENCE) -> Interval:
    """Stratified bootstrap interval of the average over datasets of the accuracy given by ``flags[d]``."""
    fs = [as_flags(f, f"flags[{i}]") for i, f in enumerate(flags)]
    return bootstrap_average_counts([int(f.sum()) for f in fs], [f.size for f in fs], chances,
                                    n_boot=n_boot, seed=seed, confidence=confidence)


# ---------------------------------------------------------------------------------------------------- two models
def _pair(a: Any, b: Any, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    fa, fb = as_flags(a, f"A{where}"), as_flags(b, f"B{where}")
    if fa.shape != fb.shape:
        raise ValueError(f"A{where} and B{where} have {fa.size} and {fb.size} samples: a paired comparison needs "
                         "the same samples")
    return fa, fb


def contingency(a: Any, b: Any) -> tuple[int, int, int, int]:
    """(both right, only A right, only B right, both wrong)."""
    fa, fb = _pair(a, b)
    return (int((fa & fb).sum()), int((fa & ~fb).sum()), int((~fa & fb).sum()), int((~fa & ~fb).sum()))


def mcnemar_exact(a: Any, b: Any) -> float:
    """Two-sided exact McNemar p-value: binomial test of A-only vs B-only samples at ½ (1 without any)."""
    _, a_only, b_only, _ = contingency(a, b)
    if a_only + b_only == 0:
        return 1.0
    return float(_st.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def _paired_replicates(tables: Sequence[tuple[int, int, int, int]], w: np.ndarray, n_boot: int,
                       seed: int) -> np.ndarray:
    """Replicates of Σ_d w_d (A-only - B-only)_d / n_d, each dataset resampled (paired) on its own."""
    rng = np.random.default_rng(seed)
    reps = np.zeros(n_boot)
    for wd, t in zip(w, tables):
        n = sum(t)
        counts = rng.multinomial(n, np.asarray(t, dtype=float) / n, size=n_boot)
        reps += wd * (counts[:, 1] - counts[:, 2]) / n
    return reps


def _permutation_p(tables: Sequence[tuple[int, int, int, int]], w: np.ndarray, n_perm: int, seed: int) -> float:
    """Two-sided p of the paired permutation (sign-flip) test of T = Σ_d w_d (acc A - acc B)_d, by dataset.

    Under the null hypothesis each of dataset d's m_d discordant samples counts +1 or -1 with probability ½,
    so T is distributed as Σ_d (w_d / n_d) (2 Bin(m_d, ½) - m_d): symmetric about 0, and p = P(|T| ≥ |t|).
    When every dataset has the same weight w_d / n_d (one dataset; or a plain average of equally sized
    datasets) that is exactly the two-sided binomial (McNemar) test of the pooled discordant counts; otherwise
    it is estimated from ``n_perm`` seeded random sign flips, p = (1 + #{|T*| ≥ |t|}) / (1 + n_perm).
    """
    m = np.array([t[1] + t[2] for t in tables])
    if m.sum() == 0:
        return 1.0
    scale = np.array([wd / sum(t) for wd, t in zip(w, tables)])
    used = scale[m > 0]
    if np.allclose(used, used[0], rtol=1e-12, atol=0.0):
        a_only = sum(t[1] for t in tables)
        return float(_st.binomtest(a_only, int(m.sum()), 0.5).pvalue)
    t_obs = abs(float(np.sum(scale * np.array([t[1] - t[2] for t in tables]))))
    rng = np.random.default_rng(seed)
    t_null = np.zeros(n_perm)
    for s, md in zip(scale, m):
        if md:
            t_null += s * (2.0 * rng.binomial(md, 0.5, size=n_perm) - md)
    tol = 1e-12 * max(t_obs, float(np.max(scale)))
    return float((1 + np.count_nonzero(np.abs(t_null) >= t_obs - tol)) / (1 + n_perm))


def paired_dataset(a: Any, b: Any, *, n_boot: int = N_BOOTSTRAP, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> PairedDifference:
    """A vs B on one dataset (same samples): accuracy difference, paired bootstrap interval, exact McNemar p."""
    fa, fb = _pair(a, b)
    if fa.size == 0:
        raise ValueError("no samples")
    t = contingency(fa, fb)
    reps = _paired_replicates([t], np.ones(1), n_boot, seed)
    lo, hi = _percentile(reps, confidence)
    acc_a, acc_b = float(fa.mean()), float(fb.mean())
    return PairedDifference(acc_a, acc_b, acc_a - acc_b, lo, hi, mcnemar_exact(fa, fb), "exact McNemar",
                            t[1], t[2], fa.size, confidence)


def paired_average(a: Sequence[Any], b: Sequence[Any], chances: Sequence[float] | None = None, *,
                   n_boot: int = N_BOOTSTRAP, n_perm: int = N_PERMUTATIONS, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> PairedDifference:
    """A vs B on the average over datasets (``a[d]``, ``b[d]``: flags on the same samples of dataset d).

    The interval is the percentile interval of a paired, stratified bootstrap; p is the two-sided p-value of
    the paired permutation test stratified by dataset (see the module docstring).
    """
    if len(a) != len(b):
        raise ValueError(f"A has {len(a)} datasets and B {len(b)}")
    pairs = [_pair(x, y, f"[{i}]") for i, (x, y) in enumerate(zip(a, b))]
    if any(x.size == 0 for x, _ in pairs):
        raise ValueError("a dataset has no samples")
    w, _ = _weights(len(pairs), chances)
    tables = [contingency(x, y) for x, y in pairs]
    reps = _paired_replicates(tables, w, n_boot, seed)
    lo, hi = _percentile(reps, confidence)
    acc_a = average([float(x.mean()) for x, _ in pairs], chances)
    acc_b = average([float(y.mean()) for _, y in pairs], chances)
    p = _permutation_p(tables, w, n_perm, seed)
    return PairedDifference(acc_a, acc_b, acc_a - acc_b, lo, hi, p, "paired permutation test, stratified by dataset",
                            sum(t[1] for t in tables), sum(t[2] for t in tables), sum(x.size for x, _ in pairs),
                            confidence)


TEST_DESCRIPTION = (
    f"paired permutation (sign-flip) test on the same samples, stratified by dataset, two-sided, {N_PERMUTATIONS} "
    "seeded resamples; exact McNemar when every dataset weighs the same per sample")
