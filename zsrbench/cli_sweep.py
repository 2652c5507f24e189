"""``zsrbench sweep GRID.toml``: a grid of `zsrbench run` jobs submitted through submitit (:mod:`zsrbench.sweep`).

Exit status: 0 when every job waited for is done (or nothing was waited for), 1 when one failed, 2 on a user
error (then nothing is submitted or written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from zsrbench.cli_common import console, user_errors
from zsrbench.errors import ZsrError


def sweep(
    grid: Path = typer.Argument(..., help="the grid file (TOML; see docs/sweeps.md)"),
    executor: str = typer.Option("local", "--executor", "-e", help="slurm | local (processes here) | debug "
                                 "(in this process)"),
    folder: Optional[str] = typer.Option(None, "--folder", help="submitit's folder for job files and logs "
                                         "(default: RESULTS_DIR/sweeps/<grid name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the grid and list the jobs; submit nothing"),
    wait: Optional[bool] = typer.Option(None, "--wait/--no-wait", help="wait for the jobs and report each "
                                        "(default: wait for local and debug, not for slurm)"),
) -> None:
    """Run a grid of defenses × attack suites × ε × protocols, one `zsrbench run` per job, skipping what the
    leaderboard already holds. Exit 1 when a job failed."""
    try:
        from zsrbench import sweep as sw
    except ImportError as exc:  # pragma: no cover - submitit is a dependency
        raise ZsrError(f"`zsrbench sweep` needs submitit ({exc}): pip install submitit.") from exc
    wait = executor != "slurm" if wait is None else wait
    if executor == "debug" and not wait:
        raise ZsrError("The debug executor runs each job in this process when its result is asked for: drop "
                       "--no-wait, or use --executor local to run jobs in the background.")
    plan = sw.prepare(grid, executor, folder)
    _show_plan(plan, dry_run)
    if dry_run or not plan.todo:
        return
    jobs = sw.submit(plan)
    for job, item in zip(jobs, plan.todo):
        _line(f"submitted {job.job_id}", item.label)
    if not wait:
        console.print(f"not waiting: logs and results of the jobs are under {plan.folder}", highlight=False,
                      soft_wrap=True)
        return
    if not _report(sw, jobs, plan):
        raise typer.Exit(1)


def _show_plan(plan: Any, dry_run: bool) -> None:
    total = len(plan.todo) + len(plan.skipped)
    verb = "to submit" if dry_run else "submitted"
    console.print(f"sweep {escape(plan.grid.name)}: {total} jobs expanded, {len(plan.skipped)} skipped (already on "
                  f"the leaderboard), {len(plan.todo)} {verb} ({plan.executor} executor, folder {plan.folder})",
                  highlight=False, soft_wrap=True)
    for item in plan.skipped:
        _line("skipped", item.label)
    if dry_run:
        for item in plan.todo:
            _line("would run", item.label)


def _report(sw: Any, jobs: list[Any], plan: Any) -> bool:
    """Wait for each job and print its outcome and the entries landed; whether all are done."""
    ok_all = True
    for job, item in zip(jobs, plan.todo):
        ok, text = sw.outcome(job)
        ok_all &= ok
        _line(f"{job.job_id} {'done' if ok else 'failed'}", f"{item.label}: {text.removeprefix('done: ')}")
    console.print(f"leaderboard: {sw.landed(plan.todo)} of {len(plan.todo)} entries landed", highlight=False)
    return ok_all


def _line(what: str, text: str) -> None:
    console.print(f"  {escape(what)}  {escape(text)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("sweep")(user_errors(sweep))
