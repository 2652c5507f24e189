"""zsrbench.stats against values computed independently here (closed forms, scipy's own routines)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from zsrbench import stats as S


def flags(n: int, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    f = np.zeros(n, dtype=bool)
    f[:k] = True
    return rng.permutation(f) if rng is not None else f


# ------------------------------------------------------------------------------------------------ Wilson
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (8, 20), (500, 1000), (1, 64)])
def test_wilson_matches_the_closed_form(k, n):
    z = st.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    iv = S.wilson(k, n)
    assert iv.estimate == p and iv.lo == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert iv.hi == pytest.approx(min(1.0, centre + half), abs=1e-12)
    assert iv.lo <= p <= iv.hi and iv.half_width == pytest.approx((iv.hi - iv.lo) / 2)
    assert S.wilson_flags(flags(n, k)) == iv


def test_wilson_rejects_impossible_counts():
    for k, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            S.wilson(k, n)


# ------------------------------------------------------------------------------------------------ McNemar
def test_mcnemar_against_binomtest_and_a_textbook_value():
    # a hand-made 2×2 table: 30 both right, 7 only A, 2 only B, 11 both wrong
    a = np.array([1] * 30 + [1] * 7 + [0] * 2 + [0] * 11, dtype=bool)
    b = np.array([1] * 30 + [0] * 7 + [1] * 2 + [0] * 11, dtype=bool)
    assert S.contingency(a, b) == (30, 7, 2, 11)
    assert S.mcnemar_exact(a, b) == pytest.approx(st.binomtest(7, 9, 0.5).pvalue)
    # discordant pairs 1 vs 9: p = 2 · (C(10,0) + C(10,1)) / 2^10 = 22/1024
    a = np.array([1] + [0] * 9 + [1] * 5, dtype=bool)
    b = np.array([0] + [1] * 9 + [1] * 5, dtype=bool)
    assert S.mcnemar_exact(a, b) == pytest.approx(22 / 1024)
    assert S.mcnemar_exact(a, a) == 1.0  # no discordant pair
    for k in (1, 3, 8):
        worse, better = flags(20, 5), flags(20, 5 + k)
        assert S.mcnemar_exact(worse, better) == pytest.approx(min(1.0, 2 * 0.5 ** k))


# ------------------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_contains_the_estimate_shrinks_with_n_and_is_seeded():
    rng = np.random.default_rng(3)
    small = [flags(100, 40, rng), flags(100, 70, rng)]
    large = [flags(10_000, 4000, rng), flags(10_000, 7000, rng)]
    a, b = S.bootstrap_average(small), S.bootstrap_average(large)
    assert a.estimate == pytest.approx(0.55) and a.lo < 0.55 < a.hi
    assert b.estimate == pytest.approx(0.55) and b.lo < 0.55 < b.hi
    assert (b.hi - b.lo) < (a.hi - a.lo) / 5  # ~ 1/sqrt(n): 10× less wide for 100× the samples
    assert S.bootstrap_average(small) == a  # the same numbers on every call
    other = S.bootstrap_average(small, seed=S.SEED + 1)  # another seed: other draws, about the same interval
    assert other.lo == pytest.approx(a.lo, abs=0.02) and other.hi == pytest.approx(a.hi, abs=0.02)
    # the standard error of the average of two independent proportions, for scale
    se = math.sqrt(0.4 * 0.6 / 100 + 0.7 * 0.3 / 100) / 2
    assert (a.hi - a.lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_stratified_bootstrap_agrees_with_scipy_index_resampling():
    rng = np.random.default_rng(0)
    data = [flags(150, 60, rng), flags(80, 20, rng), flags(300, 210, rng)]
    ours = S.bootstrap_average(data, n_boot=20_000)

    def mean_of_means(*xs, axis=-1):
        return sum(np.mean(x, axis=axis) for x in xs) / len(xs)

    ref = st.bootstrap([d.astype(float) for d in data], mean_of_means, n_resamples=20_000, method="percentile",
                       rng=np.random.default_rng(1), vectorized=True)
    assert ours.lo == pytest.approx(ref.confidence_interval.low, abs=0.006)
    assert ours.hi == pytest.approx(ref.confidence_interval.high, abs=0.006)


def test_normalised_average():
    data = [flags(40, 30), flags(50, 20), flags(60, 15)]
    chances = [0.5, 0.25, 0.1]
    want = np.mean([(30 / 40 - 0.5) / 0.5, (20 / 50 - 0.25) / 0.75, (15 / 60 - 0.1) / 0.9])
    iv = S.bootstrap_average(data, chances)
    assert iv.estimate == pytest.approx(want) and iv.lo < want < iv.hi
    assert S.average([0.75, 0.4, 0.25], chances) == pytest.approx(want)
    # with one chance level for all, the normalised replicates are the plain ones, transformed linearly
    plain, norm = S.bootstrap_average(data), S.bootstrap_average(data, [0.25] * 3)
    assert norm.lo == pytest.approx((plain.lo - 0.25) / 0.75) and norm.hi == pytest.approx((plain.hi - 0.25) / 0.75)


# ------------------------------------------------------------------------------------------------ paired
def test_paired_dataset():
    rng = np.random.default_rng(5)
    a = rng.random(400) < 0.5
    b = a.copy()
    flip = rng.choice(400, 40, replace=False)
    b[flip] = ~b[flip]
    r = S.paired_dataset(a, b)
    assert r.difference == pytest.approx(a.mean() - b.mean()) and r.lo <= r.difference <= r.hi
    assert r.p == pytest.approx(S.mcnemar_exact(a, b)) and r.a_only + r.b_only == 40 and r.n == 400
    ref = st.bootstrap((a.astype(float), b.astype(float)), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                       paired=True, n_resamples=20_000, method="percentile", rng=np.random.default_rng(2),
                       vectorized=True)
    wide = S.paired_dataset(a, b, n_boot=20_000)
    assert wide.lo == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert wide.hi == pytest.approx(ref.confidence_interval.high, abs=0.004)
    same = S.paired_dataset(a, a)
    assert (same.difference, same.lo, same.hi, same.p) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="same samples"):
        S.paired_dataset(a, b[:-1])


def test_paired_average_one_dataset_is_mcnemar():
    a, b = flags(30, 10), flags(30, 16)
    r = S.paired_average([a], [b])
    assert r.p == pytest.approx(2 * 0.5 ** 6) == pytest.approx(S.mcnemar_exact(a, b))
    assert r.difference == pytest.approx(-6 / 30) and r.lo <= r.difference <= r.hi


def test_paired_average_against_scipy_permutation_test():
    """Unequal weights per sample (other sizes, normalised): the sign-flip p against scipy's permutation test."""
    rng = np.random.default_rng(11)
    sizes, chances = (60, 90, 40), [0.5, 0.1, 0.25]
    a = [rng.random(n) < 0.6 for n in sizes]
    b = []
    for x in a:
        y = x.copy()
        idx = rng.choice(x.size, x.size // 6, replace=False)
        y[idx] = rng.random(idx.size) < 0.35
        b.append(y)
    w = np.concatenate([np.full(n, 1 / (len(sizes) * n * (1 - c))) for n, c in zip(sizes, chances)])
    x, y = np.concatenate(a).astype(float), np.concatenate(b).astype(float)
    ref = st.permutation_test((x, y), lambda u, v, axis=-1: np.sum(w * (u - v), axis=axis), vectorized=True,
                              permutation_type="samples", n_resamples=20_000, rng=np.random.default_rng(4))
    r = S.paired_average(a, b, chances, n_perm=20_000)
    assert r.difference == pytest.approx(float(np.sum(w * (x - y))))
    assert r.difference == pytest.approx(S.average([v.mean() for v in a], chances) - S.average([v.mean() for v in b], chances))
    assert r.p == pytest.approx(ref.pvalue, abs=0.015)
    assert S.paired_average(a, b, chances, n_perm=20_000) == r  # seeded


def test_paired_average_equal_weights_is_the_pooled_exact_test():
    a = [flags(50, 20), flags(50, 30)]
    b = [flags(50, 23), flags(50, 28)]  # B: 3 more on the first, 2 fewer on the second
    r = S.paired_average(a, b)
    assert (r.a_only, r.b_only) == (2, 3) and r.p == pytest.approx(st.binomtest(2, 5, 0.5).pvalue)
    assert r.difference == pytest.approx(-0.01)


def test_significance_of_small_and_large_differences():
    a = [flags(1000, 500)]
    assert not S.paired_average(a, [flags(1000, 499)]).significant  # 1 sample of 1000
    far = S.paired_average(a, [flags(1000, 200)])  # 300 of 1000
    assert far.significant and far.lo > 0.25
