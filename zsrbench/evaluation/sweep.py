"""Sweeps: a TOML grid of defenses × attack suites × ε × protocols, one :func:`zsrbench.evaluation.runner.run` per job,
submitted through submitit (a slurm cluster, local processes, or this process with ``debug``).

The whole grid is checked before anything is submitted or written (each job as `zsrbench run` checks it before
it builds a model, its checkpoint included); jobs whose entry the leaderboard already holds are skipped. A job is
:class:`submitit.helpers.Checkpointable`: preempted or timed out, it is requeued with ``resume=True`` and goes on
from the datasets it finished. ``docs/sweeps.md`` shows a grid.

This module plans a sweep (:func:`prepare`), submits it and reports its outcome; the grid file is read by
:mod:`zsrbench.evaluation.sweep_grid` and its jobs are checked and matched with the leaderboard by
:mod:`zsrbench.evaluation.sweep_jobs`.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import submitit
from submitit.core.utils import DelayedSubmission

from zsrbench.errors import ZsrError
from zsrbench.paths import check_output_dir
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.sweep_grid import Grid, load_grid
from zsrbench.evaluation.sweep_jobs import Job, checked_jobs, measured_keys, probe_path

EXECUTORS = ("slurm", "local", "debug")
SLURM_ONLY = ("tasks_per_node", "nodes", "partition", "account", "qos", "constraint", "array_parallelism", "setup")
LOCAL_MINUTES = 24 * 60  # local jobs: submitit's default limit (2 minutes) would stop an evaluation early
CONFIRM_ABOVE = 500  # a sweep that would submit more jobs asks for confirmation (or --yes); docs/sweeps.md


@dataclass(frozen=True)
class SweepPlan:
    grid: Grid
    executor: str
    folder: Path
    todo: list[Job]
    skipped: list[Job]


def prepare(path: str | Path, executor: str, folder: str | Path | None = None) -> SweepPlan:
    """Read and check the grid and the executor, expand the jobs and set aside those already measured.

    Raises :class:`ZsrError` before anything is written when anything is wrong.
    """
    from zsrbench.registry import load_builtins

    grid = load_grid(path)
    check_executor(executor, grid.executor)
    load_builtins()
    jobs = checked_jobs(grid, executor)
    out = Path(folder) if folder is not None else Path(jobs[0].cfg.results_dir) / "sweeps" / grid.name
    check_output_dir(out, "--folder", "Sweep folder")
    probe_path(out, "--folder")  # (a whole path longer than the filesystem allows)
    done = measured_keys(jobs)
    return SweepPlan(grid=grid, executor=executor, folder=out.absolute(),
                     todo=[j for j in jobs if j.key not in done], skipped=[j for j in jobs if j.key in done])


# ---------------------------------------------------------------------------------------------------- executors
def check_executor(kind: str, options: dict[str, Any]) -> None:
    if kind not in EXECUTORS:
        close = difflib.get_close_matches(kind, EXECUTORS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ZsrError(f"Unknown executor '{kind}'.{hint} Use --executor with one of: {', '.join(EXECUTORS)}.")
    if kind != "slurm":
        return
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ZsrError(f"--executor slurm needs slurm's {' and '.join(missing)} on PATH, and this machine has none: "
                       "submit from a slurm login node, or use --executor local to run the jobs here.")
    if "time" not in options:
        raise ZsrError("--executor slurm needs a time limit: add `time = MINUTES` under [executor] in the grid "
                       "(a preempted or timed-out job is requeued and resumes).")


def executor_parameters(kind: str, options: dict[str, Any], name: str) -> dict[str, Any]:
    """The grid's [executor] table as submitit.AutoExecutor parameters (slurm-only ones prefixed ``slurm_``)."""
    params: dict[str, Any] = {"name": f"zsrbench-{name}",
                              "timeout_min": options.get("time", LOCAL_MINUTES if kind == "local" else None)}
    for key, value in options.items():
        if key != "time":
            params[f"slurm_{key}" if key in SLURM_ONLY else key] = value
    return {k: v for k, v in params.items() if v is not None}


def make_executor(plan: SweepPlan) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=plan.folder, cluster=plan.executor)
    executor.update_parameters(**executor_parameters(plan.executor, plan.grid.executor, plan.grid.name))
    return executor


def submit(plan: SweepPlan) -> list[Any]:
    """Submit the plan's jobs (one slurm array); the submitit jobs, in the plan's order."""
    if not plan.todo:
        return []
    import subprocess

    executor = make_executor(plan)
    try:
        with executor.batch():
            jobs = [executor.submit(SweepJob(job.cfg)) for job in plan.todo]
    except (submitit.core.utils.FailedSubmissionError, subprocess.CalledProcessError, OSError) as exc:
        raise ZsrError(f"Submitting the sweep's jobs failed: {str(exc).strip() or type(exc).__name__}. Check the "
                       f"[executor] settings of {plan.grid.path}; submitit's files are under {plan.folder}.") from exc
    return jobs


class SweepJob(submitit.helpers.Checkpointable):
    """One `zsrbench run`; preempted or timed out, it is requeued with ``resume=True``."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> list[str]:
        from zsrbench.evaluation.runner import run

        _export_ranks()
        _train_first(self.cfg)
        return [str(r.path) for r in run(self.cfg, progress=False, log=print)]

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        return DelayedSubmission(SweepJob(replace(self.cfg, resume=True)))


def _export_ranks() -> None:
    """A job of several tasks (slurm tasks_per_node, nodes) is one run over torch.distributed ranks: export
    RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (every rank keeps all the node's GPUs visible and
    takes cuda:LOCAL_RANK)."""
    try:
        tasks = submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return
    if tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _train_first(cfg: RunConfig) -> None:
    """Fine-tune a defense trained on demand under a lock, so jobs sharing it train it once, not together."""
    from filelock import FileLock

    from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
    from zsrbench.evaluation.config import check_device
    from zsrbench.training.on_demand import ensure_trained, on_demand_dir

    load_builtins()  # (a fresh process)
    defense, protocol = DEFENSES.get(cfg.defense), PROTOCOLS.get(cfg.protocol)
    if cfg.checkpoint is not None or not defense.trainable or not protocol.train_on_demand:
        return
    seed = protocol.seed if cfg.seed is None else cfg.seed
    out = on_demand_dir(defense.name, protocol, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        ensure_trained(defense.name, protocol, seed=seed, device=check_device(cfg.device), log=print)


# ---------------------------------------------------------------------------------------------------- outcomes
def outcome(job: Any) -> tuple[bool, str]:
    """Wait for ``job``: (True, "done: N records") or (False, the first line of its error)."""
    exc = job.exception()  # (the debug executor runs the job here)
    if exc is None:
        return True, f"done: {len(job.result())} records"
    return False, first_line(exc)


def first_line(exc: BaseException) -> str:
    """The first line of the job's own error: from a submitit trace, the line after the last frame."""
    lines = str(exc).splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not frames:
        return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
    rest = [line for line in lines[frames[-1] + 1:] if line.strip() and not line.startswith((" ", "\t"))]
    return rest[0] if rest else lines[-1]


def landed(jobs: Sequence[Job]) -> int:
    """How many of ``jobs`` have a measured entry in their leaderboard now."""
    return len(measured_keys(jobs))
