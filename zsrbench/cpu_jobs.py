"""Evaluating the datasets of a run in parallel CPU processes (``zsrbench run --jobs``).

On a CPU the attacks of a small model are a long series of small matrix products; splitting one such product
over several threads gains little, while independent datasets in independent processes (one thread each)
use every core fully. ``--jobs auto`` (the default) therefore runs up to one process per core on CPU, and
one process on a GPU. The environment variable ``ZSRBENCH_JOBS`` sets the default for ``auto``.

Results do not depend on the number of processes: every dataset is evaluated by the same code with seeds that
depend only on the run's seed, the attack and the batch (floating-point reductions may still differ in the
last bits between thread counts).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from zsrbench.errors import ZsrError

if TYPE_CHECKING:
    from zsrbench.runner import DatasetResult, RunConfig

ENV_VAR = "ZSRBENCH_JOBS"
MEMORY_FACTOR = 8  # a worker needs about this many times its model's bytes (weights, activations, attack state)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def parse_jobs(value: str | int | None) -> int | None:
    """``None``/``"auto"`` -> None (decide per run), else a positive number of processes."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ZsrError(f"--jobs takes a number of processes or 'auto'; got '{value}'.") from None
    if n < 1:
        raise ZsrError(f"--jobs must be at least 1 (or 'auto'); got {n}.")
    return n


def resolve_jobs(requested: int | None, device: str, n_datasets: int, model_bytes: int = 0) -> int:
    """How many processes evaluate the run's ``n_datasets`` datasets.

    An explicit request is honoured on CPU (capped at the number of datasets). ``auto`` is 1 on a GPU, else
    ``$ZSRBENCH_JOBS`` when set, else one per usable core, capped by datasets and by free memory.
    """
    on_cpu = device.startswith("cpu")
    if not on_cpu and requested is not None and requested > 1:
        raise ZsrError(f"--jobs {requested} runs CPU processes; on {device} use --jobs 1 (or leave it at auto).")
    if n_datasets <= 1 or not on_cpu:
        return 1
    if requested is None:
        requested = parse_jobs(os.environ.get(ENV_VAR))
    if requested is None:
        requested = usable_cores()
        mem = available_memory()
        if mem is not None and model_bytes > 0:
            requested = min(requested, max(1, mem // (MEMORY_FACTOR * model_bytes)))
    return max(1, min(requested, n_datasets))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _evaluate_one(cfg: "RunConfig") -> list[str]:
    from zsrbench.runner import run

    return [str(r.path) for r in run(cfg, progress=False, log=None)]


def evaluate_in_processes(cfg: "RunConfig", datasets: Sequence[str], jobs: int,
                          on_done: Callable[["DatasetResult"], None] | None = None) -> list["DatasetResult"]:
    """Evaluate ``datasets`` with ``jobs`` spawned processes, one dataset at a time each; results in input order.

    ``cfg`` must already name the model's weights (``checkpoint`` resolved), so that workers only load them.
    Workers write result records and nothing else; the caller adds them to the leaderboard. A worker's error
    (a :class:`ZsrError` included) is raised here and stops the other workers; records already written stay on
    disk (``--resume`` picks them up) and nothing reaches the leaderboard.
    """
    from zsrbench.leaderboard.records import read_record
    from zsrbench.runner import DatasetResult

    threads = max(1, usable_cores() // jobs)
    one = [replace(cfg, datasets=(name,), shard=None, jobs=1, leaderboard_dir=None) for name in datasets]
    done: dict[str, DatasetResult] = {}
    ctx = multiprocessing.get_context("spawn")  # a fork after torch's thread pools have started can hang
    with ctx.Pool(processes=jobs, initializer=_init_worker, initargs=(threads,), maxtasksperchild=None) as pool:
        for paths in pool.imap_unordered(_evaluate_one, one, chunksize=1):
            for p in paths:
                res = DatasetResult(path=Path(p), record=read_record(p))
                done[res.record.protocol.dataset] = res
                if on_done is not None:
                    on_done(res)
    return [done[name] for name in datasets if name in done]
