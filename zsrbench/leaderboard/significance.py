"""Significance groups of a ranking table: the paired test of each ranked model's robust averages against those of
the model ranked just above it (on the same samples), and the letters that group the models it cannot tell apart."""

from __future__ import annotations

import string
from typing import Any, Sequence

import numpy as np

from zsrbench import stats
from zsrbench.leaderboard import table_model as T
from zsrbench.leaderboard.combine import Combined
from zsrbench.leaderboard.reading import LoadedEntry


def group_letter(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, …"""
    letters = string.ascii_lowercase
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = letters[r] + out
    return out


def same_samples(a: Combined | dict, b: Combined | dict, datasets: Sequence[str], a_le: LoadedEntry,
                 b_le: LoadedEntry) -> str | None:
    """None when ``a`` and ``b`` (flags per dataset) were measured on the same samples of every dataset, else why."""
    fa = a.flags if isinstance(a, Combined) else a
    fb = b.flags if isinstance(b, Combined) else b
    for d in datasets:
        ma = a_le.entry.measured.datasets[d]  # type: ignore[union-attr]
        mb = b_le.entry.measured.datasets[d]  # type: ignore[union-attr]
        la, lb = fa[d]["labels"], fb[d]["labels"]
        if ma.indices_digest != mb.indices_digest or la.shape != lb.shape or not np.array_equal(la, lb):
            return f"measured on different samples of {d}"
    return None


def _avg_datasets(g: T.Group, comb: Combined) -> list[str]:
    return [d for d in g.datasets if d in comb.flags]


def paired_rows(g: T.Group, above: Combined, below: Combined) -> tuple[stats.PairedDifference | None, str]:
    """The paired test of two ranking rows' robust averages; (None, why) when they cannot be paired."""
    da, db = _avg_datasets(g, above), _avg_datasets(g, below)
    if da != db or not da:
        return None, "averages over different datasets"
    why = same_samples(above, below, da, above.loaded, below.loaded)
    if why:
        return None, why
    chances = [above.loaded.entry.measured.datasets[d].metrics.chance for d in da] if g.normalised else None  # type: ignore[union-attr]
    res = stats.paired_average([above.flags[d]["robust"] for d in da], [below.flags[d]["robust"] for d in da], chances)
    return res, ""


def _vs_above(label: str, res: stats.PairedDifference | None, why: str) -> dict[str, Any]:
    if res is None:
        return {"model": label, "tested": False, "reason": why}
    return {"model": label, "tested": True, "difference": 100 * res.difference, "lo": 100 * res.lo,
            "hi": 100 * res.hi, "p": res.p, "significant": res.significant, "test": res.test}


def assign_groups(g: T.Group, ranked: Sequence[T.Row], combined: dict[int, Combined]) -> list[str]:
    """Number the ranked rows (best first) and give each its significance group: the letter of the row above unless
    their paired test (:func:`paired_rows`) is significant. ``combined``: each ranked row's flags, by ``id(row)``.
    Returns the neighbours that could not be tested, with why."""
    untested = []
    letter = 0
    for i, r in enumerate(ranked):
        r.rank = i + 1
        if i:
            above = ranked[i - 1]
            res, why = paired_rows(g, combined[id(above)], combined[id(r)])
            r.vs_above = _vs_above(above.label, res, why)
            if res is None:
                untested.append(f"{r.label} vs {above.label}: {why}")
            elif res.significant:
                letter += 1
        r.group = group_letter(letter)
    return untested
