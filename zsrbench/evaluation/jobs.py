"""The datasets of a run as jobs: each dataset built, its seeded samples cut into work units, where its record
and units go on disk, and (under --resume) what is already done."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from zsrbench.attacks.base import eps_text
from zsrbench.data.base import EvalSet, indices_digest, select_indices
from zsrbench.errors import ZsrError
from zsrbench.evaluation.config import Plan
from zsrbench.evaluation.units import UnitResult, UnitStore, settings_key, unit_bounds
from zsrbench.leaderboard.records import read_record
from zsrbench.leaderboard.schema import ResultRecord
from zsrbench.registry import DATASETS


@dataclass
class DatasetResult:
    """A dataset's written record and where it is."""

    path: Path
    record: ResultRecord


@dataclass
class Job:
    """One dataset of the run: its samples, their units, and (on rank 0) what is already done."""

    name: str
    evalset: EvalSet
    indices: list[int]
    bounds: list[tuple[int, int]]
    offset: int  # of its first sample in the run's concatenation of all datasets' samples
    store: UnitStore | None
    done: dict[int, UnitResult] = field(default_factory=dict)
    result: DatasetResult | None = None


def make_jobs(plan: Plan, mid: str | None, image_size: int, log: Callable[[str], None] | None) -> list[Job]:
    jobs, offset = [], 0
    for name in plan.datasets:
        evalset = build_evalset(plan, name, image_size, log)
        indices = select_indices(len(evalset), plan.n_samples, plan.seed)
        if log and mid is not None and plan.n_samples is not None and plan.n_samples > len(evalset):
            log(f"{name}: {plan.n_samples} samples asked for, the dataset has {len(evalset)}: all of them are "
                "evaluated (recorded in the record's notes)")
        store = None if mid is None else UnitStore(record_file(plan, mid, name), unit_key(plan, mid, indices))
        jobs.append(Job(name, evalset, list(indices), unit_bounds(len(indices), plan.batch_size), offset, store))
        offset += len(indices)
    return jobs


def record_file(plan: Plan, mid: str, dataset: str) -> Path:
    from zsrbench.leaderboard.records import result_path

    return result_path(plan.cfg.results_dir, plan.protocol.name, plan.protocol.version, mid, plan.suite,
                       eps_text(plan.eps), dataset, plan.subset, plan.variant)


def unit_key(plan: Plan, mid: str, indices: Sequence[int]) -> str:
    return settings_key({"protocol": [plan.protocol.name, plan.protocol.version], "model": mid,
                         "indices": indices_digest(indices), "params": plan.params, "eps": plan.eps,
                         "seed": plan.seed, "batch": plan.batch_size, "precision": plan.cfg.precision})


def resume(plan: Plan, mid: str, jobs: Sequence[Job], log: Callable[[str], None] | None) -> None:
    """Rank 0: take finished records (and, for the others, finished units) from disk under --resume; without
    it, units left by an earlier run of these settings are discarded."""
    for job in jobs:
        if not plan.cfg.resume:
            job.store.clear()
            continue
        job.result = resumable(plan, mid, job.name, job.indices)
        if job.result is not None:
            job.store.clear()  # units left by a run stopped after writing the record: the record holds them
            if log:
                log(f"{job.name}: already evaluated with the same settings ({job.result.path}); skipped (--resume)")
            continue
        attacks = [s.name for s in plan.specs]
        job.done = {k: u for k, (start, stop) in enumerate(job.bounds)
                    if (u := job.store.load(k, stop - start, attacks)) is not None}
        if job.done and log:
            log(f"{job.name}: {len(job.done)} of {len(job.bounds)} units already evaluated; resuming (--resume)")


def build_evalset(plan: Plan, name: str, image_size: int, log: Callable[[str], None] | None) -> EvalSet:
    cfg = plan.cfg
    builder = DATASETS.get(name)
    if not cfg.skip_broken_images:
        return builder.build(cfg.data_root, image_size=image_size, download=cfg.download)
    evalset = builder.build(cfg.data_root, image_size=image_size, download=cfg.download, skip_broken=True)
    if evalset.skipped and log:
        log(f"{name}: left out {len(evalset.skipped)} image(s) that do not decode (--skip-broken-images; recorded): "
            + ", ".join(evalset.skipped[:3]) + (" …" if len(evalset.skipped) > 3 else ""))
    return evalset


def resumable(plan: Plan, mid: str, dataset: str, indices: Sequence[int]) -> DatasetResult | None:
    """The existing record of exactly this evaluation, if one is on disk: the same samples, attacks and their
    parameters, ε, seed, batch and precision (everything that changes the per-sample flags)."""
    from zsrbench.leaderboard.records import result_path

    path = result_path(plan.cfg.results_dir, plan.protocol.name, plan.protocol.version, mid, plan.suite,
                       eps_text(plan.eps), dataset, plan.subset, plan.variant)
    if not path.is_file():
        return None
    try:
        rec = read_record(path)
    except ZsrError:
        return None
    p = rec.protocol
    same = (p.version == plan.protocol.version and p.indices_digest == indices_digest(indices)
            and p.precision == plan.cfg.precision and p.seed == plan.seed
            and (p.batch_size or plan.protocol.batch_size) == plan.batch_size and p.variant == plan.variant
            and [(a.name, a.params) for a in p.attacks] == [(k, v) for k, v in plan.params.items()])
    return DatasetResult(path=path, record=rec) if same else None
