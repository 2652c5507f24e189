"""The order of a run's work units: the longest expected first, so that no rank idles at the end of the run while
another still works through a long unit.

A unit's expected cost is its number of samples times its dataset's seconds per sample, the median over earlier
records of the same protocol, attack suite, ε and dataset (any model): those under ``--results-dir``, then those
the leaderboard's entries hold. A dataset without any earlier record is taken at the median of the others; when
no dataset has one, the order stays the plan's. The order changes when each unit is evaluated, never what it
computes: a unit's attack seeds come from its position in its dataset (:func:`zsrbench.evaluation.unit.batch_seed`).
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Sequence

from zsrbench.attacks.base import eps_text
from zsrbench.evaluation.config import Plan
from zsrbench.evaluation.jobs import Job
from zsrbench.evaluation.summary import earlier_timings, glob_records, timings


def seconds_per_sample(results_dir: str | Path, leaderboard_dir: str | Path | None, protocol: str, version: int,
                       suite: str, eps: float, datasets: Sequence[str]) -> dict[str, float]:
    """Per dataset, the median seconds per sample of earlier records (datasets without one are left out)."""
    from zsrbench.leaderboard.entries import eps_part

    board = Path(leaderboard_dir).expanduser() / protocol if leaderboard_dir is not None else None
    pattern = f"*__{suite}__{eps_part(eps_text(eps))}__v{version}*/r*"
    out: dict[str, float] = {}
    for d in datasets:
        seen = earlier_timings(results_dir, protocol, suite, eps, d, version)
        if not seen and board is not None:
            seen = timings(glob_records(board, f"{pattern}/{d}.json"))
        if seen:
            out[d] = median(w / n for w, n in seen)
    return out


def longest_first(units: Sequence[tuple[int, int]], costs: Sequence[float]) -> list[tuple[int, int]]:
    """``units`` ordered by ``costs`` (one per unit), the largest first; equal costs keep their order."""
    order = sorted(range(len(units)), key=lambda i: -costs[i])
    return [units[i] for i in order]


def unit_order(plan: Plan, jobs: Sequence[Job], pending: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``pending`` units (``(job, unit)`` pairs) of ``jobs``, the longest expected first."""
    rate = seconds_per_sample(plan.cfg.results_dir, plan.cfg.leaderboard_dir, plan.protocol.name,
                              plan.protocol.version, plan.suite, plan.eps, [job.name for job in jobs])
    if not rate:
        return list(pending)
    unknown = median(rate.values())
    costs = [rate.get(jobs[j].name, unknown) * (jobs[j].bounds[k][1] - jobs[j].bounds[k][0]) for j, k in pending]
    return longest_first(pending, costs)
