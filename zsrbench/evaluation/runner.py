"""Evaluate a defense under an attack suite on the datasets of a protocol, and write result records.

A sample is robust only if it is classified correctly clean and survives every attack of the suite. Every
attack runs on all clean-correct samples, so each attack's own robust accuracy is known too; the per-sample
flags go to a sidecar next to each record.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import ConcatDataset, Subset

from zsrbench.attacks.autoattack_log import listening
from zsrbench.attacks.base import eps_text
from zsrbench.defenses.identity import model_id, provenance
from zsrbench.evaluation import ranks
from zsrbench.evaluation.config import Plan, RunConfig, make_plan, set_matmul_precision
from zsrbench.evaluation.costs import unit_order
from zsrbench.evaluation.jobs import DatasetResult, Job, make_jobs, resume
from zsrbench.evaluation.model import prepare_model
from zsrbench.evaluation.records import finish_dataset
from zsrbench.evaluation.stages import UnitStages
from zsrbench.evaluation.summary import say_plan
from zsrbench.evaluation.unit import evaluate_unit, to_device, unit_loader
from zsrbench.evaluation.units import UnitResult, UnitStore
from zsrbench.leaderboard.records import read_record
from zsrbench.leaderboard.schema import AttackConfig
from zsrbench.models.clip import CLIPParts
from zsrbench.models.classifier import make_classifier


def run(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] | None = None) -> list[DatasetResult]:
    """Evaluate ``cfg`` and write one record (+ flags sidecar) per dataset under ``cfg.results_dir``.

    Started by torchrun (or as one of ``--jobs`` ranks), this process evaluates its share of the units and rank 0
    writes the records and the leaderboard; the other ranks return an empty list.
    """
    plan = make_plan(cfg)
    set_matmul_precision(cfg.precision)
    world = ranks.launched()
    if log and world.main and not os.environ.get(ranks.JOBS_RANK):  # (--jobs: said once)
        say_plan(plan, log)
    if world.size > 1:
        return _run_as_rank(plan, world, progress=progress, log=log)
    with ranks.serial_until_launch(plan.device, cfg.jobs):
        defense, parts, checkpoint = prepare_model(cfg, plan.protocol, device=plan.device, seed=plan.seed,
                                                   progress=progress, log=log)
        n_units = sum(len(j.bounds) for j in make_jobs(plan, None, parts.image_size, None))
        model_bytes = sum(p.numel() * p.element_size() for p in parts.model.parameters())
        jobs = ranks.resolve_jobs(cfg.jobs, plan.device, n_units, model_bytes)
    if jobs > 1:  # the weights are resolved (trained, downloaded) and loadable: the ranks only load them
        del parts
        if log:
            log(f"evaluating {n_units} work units in {jobs} processes (--jobs; torch.distributed, gloo)")
        paths = ranks.launch_local(run, replace(cfg, checkpoint=checkpoint, device=plan.device), jobs,
                                         verbose=log is not None, progress=progress)
        return [DatasetResult(path=Path(p), record=read_record(p)) for p in paths]
    results = _evaluate_datasets(plan, parts, defense, checkpoint, world=world, progress=progress, log=log)
    if cfg.leaderboard_dir is not None and results:
        _add_to_leaderboard(cfg.leaderboard_dir, results, log, cfg.replace_entry)
    return results


def _run_as_rank(plan: Plan, world: ranks.World, *, progress: bool,
                 log: Callable[[str], None] | None) -> list[DatasetResult]:
    """One rank of a torch.distributed run: rank 0 prepares the weights first (it may fine-tune them), then all
    evaluate their units; rank 0 writes the records and the leaderboard."""
    device = ranks.join(world, plan.device)
    plan = replace(plan, device=device)
    try:
        if world.main:  # (a --jobs rank: the launching process has said where the weights come from)
            defense, parts, checkpoint = prepare_model(plan.cfg, plan.protocol, device=device, seed=plan.seed,
                                                       progress=progress,
                                                       log=None if os.environ.get(ranks.JOBS_RANK) else log)
        ranks.barrier(world)
        if not world.main:
            defense, parts, checkpoint = prepare_model(plan.cfg, plan.protocol, device=device, seed=plan.seed)
        results = _evaluate_datasets(plan, parts, defense, checkpoint, world=world, progress=progress,
                                     log=log if world.main else None)
        if world.main and plan.cfg.leaderboard_dir is not None and results:
            _add_to_leaderboard(plan.cfg.leaderboard_dir, results, log, plan.cfg.replace_entry)
        ranks.barrier(world)
    finally:
        ranks.leave(world)
    return results


def _add_to_leaderboard(root: str, results: Sequence[DatasetResult], log: Callable[[str], None] | None,
                        replace: bool = False) -> None:
    from zsrbench.leaderboard.store import add_measured

    added = add_measured(root, [(r.path, r.record) for r in results], replace=replace)
    for rev, outcome in zip(added, added.outcomes):
        if log and outcome == "reproduced":
            log(f"reproduced {rev.stem}: {rev.parent.parent.name}/{rev.parent.name} (the same per-sample flags; "
                "no new revision)")
        elif log:
            log(f"leaderboard: {rev}" + (" (unchanged: the same records)" if outcome == "unchanged" else ""))


def _evaluate_datasets(plan: Plan, parts: CLIPParts, defense: Any, checkpoint: str | None, *,
                       world: ranks.World, progress: bool,
                       log: Callable[[str], None] | None) -> list[DatasetResult]:
    """Evaluate the units of the plan's datasets not yet done, spread over the ranks of ``world`` (one queue),
    each written to disk as it finishes; then (rank 0) write and return the datasets' records."""
    mid = model_id(defense, parts)
    if world.main:
        _check_leaderboard(plan, mid, defense)
    jobs = make_jobs(plan, mid, parts.image_size, log)
    ranks.check_world(world, sum(len(job.bounds) for job in jobs))
    if world.main:
        resume(plan, mid, jobs, log)
    pending = [(j, k) for j, job in enumerate(jobs) if job.result is None for k in range(len(job.bounds))
               if k not in job.done]
    pending = ranks.broadcast(world, unit_order(plan, jobs, pending) if world.main else None)
    heads: dict[int, tuple[torch.nn.Module, dict[str, Any]]] = {}

    def head(j: int) -> tuple[torch.nn.Module, dict[str, Any]]:
        if j not in heads:
            clf, info = make_classifier(parts, jobs[j].evalset.info.prompts(), device=plan.device)
            clf = defense.wrap_classifier(clf)  # the loaded defense: what attacks see
            heads[j] = (torch.compile(clf) if plan.cfg.compile else clf, info)
        return heads[j]

    def finish(j: int) -> None:
        finish_dataset(plan, jobs[j], mid, defense, parts, checkpoint, head(j)[1], log)

    totals: dict[str, int] = {}
    for j, k in pending:
        totals[jobs[j].name] = totals.get(jobs[j].name, 0) + jobs[j].bounds[k][1] - jobs[j].bounds[k][0]
    title = (lambda name: f"{name} [{plan.suite} ε={eps_text(plan.eps)}]")
    with ranks.Progress(world, totals, progress, title) as bar:  # open until every rank is done
        mine = _evaluate_units(plan, jobs, pending, head, bar, world=world,
                               on_complete=finish if world.size == 1 else None)
        gathered = ranks.gather(world, mine)
    if not world.main:
        return []
    for units in gathered or []:
        for j, unit in units:
            jobs[j].done[unit.index] = unit
    for j, job in enumerate(jobs):
        if job.result is None:
            finish(j)
    return [job.result for job in jobs if job.result is not None]


def _check_leaderboard(plan: Plan, mid: str, defense: Any) -> None:
    """Before any attack: the run's records will be able to join their leaderboard entry (see check_addable)."""
    if plan.cfg.leaderboard_dir is None or plan.cfg.replace_entry:
        return
    from zsrbench.leaderboard.entries import measured_slug
    from zsrbench.leaderboard.store import check_addable

    slug = measured_slug(mid, plan.suite, eps_text(plan.eps), plan.protocol.version, plan.subset, plan.variant)
    attacks = [AttackConfig(name=s.name, family=s.family, params=plan.params[s.name]) for s in plan.specs]
    check_addable(plan.cfg.leaderboard_dir, plan.protocol.name, slug, plan.datasets, attacks, plan.cfg.precision,
                  plan.seed, provenance(defense))


def _evaluate_units(plan: Plan, jobs: Sequence[Job], pending: Sequence[tuple[int, int]], head: Callable[[int], Any],
                    bar: ranks.Progress, *, world: ranks.World,
                    on_complete: Callable[[int], None] | None) -> list[tuple[int, UnitResult]]:
    """This rank's share of ``pending`` (taken from the run's one queue), each unit saved as it finishes."""
    cfg = plan.cfg
    queue = ranks.Queue(world, len(pending))
    taken: deque[tuple[int, int]] = deque()

    def batches():
        while (i := queue.take()) is not None:
            j, k = pending[i]
            taken.append((j, k))
            start, stop = jobs[j].bounds[k]
            yield list(range(jobs[j].offset + start, jobs[j].offset + stop))

    workers = cfg.num_workers if cfg.num_workers is not None else (0 if plan.device == "cpu" else 4)
    samples = ConcatDataset([Subset(job.evalset.dataset, job.indices) for job in jobs])
    loader = unit_loader(samples, batches(), device=plan.device, num_workers=workers)
    mine: list[tuple[int, UnitResult]] = []
    current = [0]  # the job of the unit being evaluated
    stages = UnitStages(lambda text: bar.stage(jobs[current[0]].name, text))
    with listening(stages.message):  # AutoAttack's stages, as its log tells them
        for x, y in loader:
            j, k = taken.popleft()
            current[0] = j
            x, y = to_device(x, y, plan.device)
            unit = evaluate_unit(head(j)[0], x, y, plan.specs, plan.params, eps=plan.eps, seed=plan.seed, index=k,
                                 start=jobs[j].bounds[k][0], device=plan.device, precision=cfg.precision,
                                 on_attack=stages.attack, non_adaptive=plan.non_adaptive)
            _save_unit(jobs[j].store, unit)
            jobs[j].done[k] = unit
            mine.append((j, unit))
            bar.advance(jobs[j].name, int(y.shape[0]))
            if on_complete is not None and len(jobs[j].done) == len(jobs[j].bounds):
                on_complete(j)
    return mine


def _save_unit(store: UnitStore, unit: UnitResult) -> None:
    from zsrbench.leaderboard.atomic import user_error

    try:
        store.save(unit)
    except OSError as exc:
        raise user_error(store.path(unit.index), exc, kept="The units already finished are kept",
                         option="--results-dir") from exc


