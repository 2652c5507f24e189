"""The order of a run's work units: the longest expected first, so that no rank idles at the end of the run while
another still works through a long unit.

A unit's expected cost is its number of samples times its dataset's seconds per sample, the median over earlier
records of the same protocol, attack suite, ε and dataset (any model): those under ``--results-dir``, then those
the leaderboard's entries hold. A dataset without any earlier record costs one (unknown) unit of time per sample;
when no dataset has one, the order stays the plan's. The order changes when each unit is evaluated, never what it
computes: a unit's attack seeds come from its position in its dataset (:func:`zsrbench.evaluation.unit.batch_seed`).
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Sequence

from zsrbench.attacks.base import eps_text
from zsrbench.evaluation.config import Plan
from zsrbench.evaluation.jobs import Job
from zsrbench.evaluation.summary import record_timing


def seconds_per_sample(results_dir: str | Path, leaderboard_dir: str | Path | None, protocol: str, version: int,
                       suite: str, eps: float, datasets: Sequence[str]) -> dict[str, float]:
    """Per dataset, the median seconds per sample of earlier records (datasets without one are left out)."""
    from zsrbench.leaderboard.entries import eps_part

    tag = f"eps{eps:g}"
    part = eps_part(eps_text(eps))
    results = Path(results_dir).expanduser() / protocol / f"v{version}"
    board = Path(leaderboard_dir).expanduser() / protocol if leaderboard_dir is not None else None
    out: dict[str, float] = {}
    for d in datasets:
        files = [p for pattern in (tag, f"{tag}__*") for p in _glob(results, f"*/{suite}/{pattern}/{d}.json")]
        if not files and board is not None:
            files = _glob(board, f"*__{suite}__{part}__v{version}*/r*/{d}.json")
        seen = [t for t in map(record_timing, files) if t is not None]
        if seen:
            out[d] = median(w / n for w, n in seen)
    return out


def _glob(root: Path, pattern: str) -> list[Path]:
    try:
        return sorted(root.glob(pattern)) if root.is_dir() else []
    except OSError:  # an unreadable folder: no estimate from it
        return []


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
