"""``zsrbench sweep GRID.toml``: a grid of `zsrbench run` jobs submitted through submitit (:mod:`zsrbench.evaluation.sweep`).

Exit status: 0 when every job waited for is done (or nothing was waited for), 1 when one failed or a large sweep
was not confirmed (nothing submitted), 2 on a user error (then nothing is submitted or written).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from zsrbench.cli.common import console, user_errors
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
    yes: bool = typer.Option(False, "--yes", "-y", help="submit a sweep of more than 500 jobs without asking"),
) -> None:
    """Run a grid of defenses × attack suites × ε × protocols, one `zsrbench run` per job, skipping what the
    leaderboard already holds. Exit 1 when a job failed."""
    try:
        from zsrbench.evaluation import sweep as sw
    except ImportError as exc:  # pragma: no cover - submitit is a dependency
        raise ZsrError(f"`zsrbench sweep` needs submitit ({exc}): pip install submitit.") from exc
    wait = executor != "slurm" if wait is None else wait
    if executor == "debug" and not wait:
        raise ZsrError("The debug executor runs each job in this process when its result is asked for: drop "
                       "--no-wait, or use --executor local to run jobs in the background.")
    plan = sw.prepare(grid, executor, folder)
    big = not dry_run and len(plan.todo) > sw.CONFIRM_ABOVE and not yes
    if big and not _confirmed(len(plan.todo), sw.CONFIRM_ABOVE, plan.grid.name):
        console.print("not confirmed: nothing was submitted", highlight=False)
        raise typer.Exit(1)
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


def interactive() -> bool:
    """Whether a person can answer a question here (standard input and error are terminals)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _confirmed(count: int, limit: int, name: str) -> bool:
    """A sweep of ``count`` jobs (more than ``limit``): ask whether to submit them; refuse where nobody can be
    asked."""
    if not interactive():
        raise ZsrError(f"Sweep {name} would submit {count} jobs, more than {limit} (above that a sweep asks for "
                       "confirmation, and nobody can answer here). Nothing was submitted. List the jobs with "
                       "--dry-run, then pass --yes to submit all of them, or make the grid smaller (or split it).")
    return typer.confirm(f"Sweep {name} would submit {count} jobs (more than {limit}). Submit them?", default=False,
                         err=True)


def _show_plan(plan: Any, dry_run: bool) -> None:
    from zsrbench.evaluation.sweep import CONFIRM_ABOVE

    total = len(plan.todo) + len(plan.skipped)
    verb = "to submit" if dry_run else "submitted"
    if plan.grid.name_note:
        console.print(f"note: {escape(plan.grid.name_note)}", highlight=False, soft_wrap=True)
    console.print(f"sweep {escape(plan.grid.name)}: {total} jobs expanded, {len(plan.skipped)} skipped (already on "
                  f"the leaderboard), {len(plan.todo)} {verb} ({plan.executor} executor, folder {plan.folder})",
                  highlight=False, soft_wrap=True)
    if dry_run and len(plan.todo) > CONFIRM_ABOVE:
        console.print(f"note: {len(plan.todo)} jobs is more than {CONFIRM_ABOVE}: submitting them asks for "
                      "confirmation (or --yes)", highlight=False, soft_wrap=True)
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
